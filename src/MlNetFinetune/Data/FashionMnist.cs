using System.Buffers.Binary;
using System.Globalization;
using System.IO.Compression;
using SkiaSharp;

namespace MlNetFinetune.Data;

/// <summary>
/// Writes the real Fashion-MNIST images from the Debian package dataset-fashion-mnist (idx files) as PNG class folders,
/// the layout the Trainer reads.
/// </summary>
public static class FashionMnist
{
    /// <summary>Where Debian's <c>dataset-fashion-mnist</c> package installs the IDX files.</summary>
    public const string DefaultSourceFolder = "/usr/share/datasets/fashion-mnist";

    /// <summary>Class names in label order; '/' of "T-shirt/top" becomes '-' to be a folder name.</summary>
    public static readonly IReadOnlyList<string> ClassNames =
        ["T-shirt-top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle-boot"];

    /// <summary>The data set's own split.</summary>
    public enum Part
    {
        /// <summary>The 60,000 training images.</summary>
        Train,

        /// <summary>The 10,000 test images.</summary>
        Test,
    }

    /// <summary>
    /// Writes <paramref name="part"/> into <paramref name="outputFolder"/>/&lt;class&gt;/&lt;part&gt;-&lt;index&gt;.png; at most
    /// <paramref name="perClass"/> images of each class (the first ones in the file), all when null. Returns the count written.
    /// </summary>
    public static int Export(Part part, string outputFolder, int? perClass = null, string sourceFolder = DefaultSourceFolder)
    {
        var prefix = part == Part.Train ? "train" : "t10k";
        var imagesPath = Path.Combine(sourceFolder, $"{prefix}-images-idx3-ubyte.gz");
        var labelsPath = Path.Combine(sourceFolder, $"{prefix}-labels-idx1-ubyte.gz");
        foreach (var file in new[] { imagesPath, labelsPath })
        {
            if (!File.Exists(file))
            {
                throw new UserInputException($"{file}: not found; install the Debian package: apt-get install -y dataset-fashion-mnist");
            }
        }

        var labels = ReadIdx(labelsPath, expectedMagic: 2049, out _);
        var images = ReadIdx(imagesPath, expectedMagic: 2051, out var dims);
        var (rows, columns) = (dims[1], dims[2]);
        var counts = new int[ClassNames.Count];
        var written = 0;
        foreach (var name in ClassNames)
        {
            Directory.CreateDirectory(Path.Combine(outputFolder, name));
        }

        for (var i = 0; i < labels.Length; i++)
        {
            var label = labels[i];
            if (perClass is int limit && counts[label] >= limit)
            {
                continue;
            }

            counts[label]++;
            using var bitmap = new SKBitmap(new SKImageInfo(columns, rows, SKColorType.Gray8, SKAlphaType.Opaque));
            System.Runtime.InteropServices.Marshal.Copy(images, i * rows * columns, bitmap.GetPixels(), rows * columns);
            using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
            var path = Path.Combine(outputFolder, ClassNames[label], string.Create(CultureInfo.InvariantCulture, $"{prefix}-{i:D5}.png"));
            File.WriteAllBytes(path, data.ToArray());
            written++;
        }

        return written;
    }

    private static byte[] ReadIdx(string path, int expectedMagic, out int[] dims)
    {
        using var stream = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        using var memory = new MemoryStream();
        stream.CopyTo(memory);
        var bytes = memory.GetBuffer().AsSpan(0, (int)memory.Length);
        var magic = BinaryPrimitives.ReadInt32BigEndian(bytes);
        if (magic != expectedMagic)
        {
            throw new UserInputException($"{path}: not an idx file of the expected kind (magic {magic}, expected {expectedMagic})");
        }

        var rank = magic & 0xFF;
        dims = new int[rank];
        for (var d = 0; d < rank; d++)
        {
            dims[d] = BinaryPrimitives.ReadInt32BigEndian(bytes[(4 + 4 * d)..]);
        }

        return bytes[(4 + 4 * rank)..].ToArray();
    }
}
