using MlNetFinetune.Data;
using MlNetFinetune.Images;

namespace MlNetFinetune.Tests;

public sealed class FashionMnistExportTests
{
    [Fact]
    public void ExportWritesDecodableClassFoldersFromTheDebianPackage()
    {
        Assert.True(File.Exists(Path.Combine(FashionMnist.DefaultSourceFolder, "t10k-images-idx3-ubyte.gz")),
            "install the real data first: apt-get install -y dataset-fashion-mnist");
        var output = Directory.CreateTempSubdirectory("mlnetfinetune-export-").FullName;
        try
        {
            var outcome = CommandLineRunner.Trainer("export-fashion-mnist", "--output", output, "--per-class", "3");

            Assert.Equal(0, outcome.ExitCode);
            foreach (var part in new[] { "train", "test" })
            {
                var folder = ImageFolder.Scan(Path.Combine(output, part));
                Assert.Equal(FashionMnist.ClassNames.Order(StringComparer.Ordinal), folder.Classes);
                Assert.Equal(30, folder.Images.Count);
                using var image = ImageDecoder.Decode(File.ReadAllBytes(folder.Images[0].Path), folder.Images[0].Path);
                Assert.Equal((28, 28), (image.Width, image.Height));
            }

            // The committed sample is the first 50 training images of each class, byte for byte.
            var sampleFile = Directory.GetFiles(Path.Combine(TestData.SampleFolder, "Bag")).Order(StringComparer.Ordinal).First();
            Assert.Equal(File.ReadAllBytes(sampleFile), File.ReadAllBytes(Path.Combine(output, "train", "Bag", Path.GetFileName(sampleFile))));
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }
}
