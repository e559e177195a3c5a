using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using MlNetFinetune.BadInputCorpus;
using MlNetFinetune.Images;

namespace MlNetFinetune.Tests.Images;

/// <summary>The bad-input corpus, written once for this class.</summary>
public sealed class BadInputCorpusFixture : IDisposable
{
    public BadInputCorpusFixture()
    {
        Root = Path.Combine(Path.GetTempPath(), "mlnetfinetune-corpus-" + Guid.NewGuid().ToString("N")[..8]);
        Manifest = CorpusWriter.Write(Root, TestData.SampleFolder);
    }

    public string Root { get; }

    public CorpusManifest Manifest { get; }

    public string Full(string relative) => Path.Combine(Root, relative.Replace('/', Path.DirectorySeparatorChar));

    public void Dispose() => CorpusWriter.Delete(Root);
}

public sealed partial class BadInputCorpusTests(BadInputCorpusFixture corpus) : IClassFixture<BadInputCorpusFixture>
{
    [Fact]
    public void TheManifestListsEveryEntryOnDiskAndNothingElse()
    {
        // Given the corpus as written, walked without following links
        var onDisk = new HashSet<string>(StringComparer.Ordinal);
        Walk(new DirectoryInfo(corpus.Root), "", onDisk);

        // When its paths are compared with the manifest's
        var listed = corpus.Manifest.Images.Select(i => i.Path).Concat(corpus.Manifest.Entries.Select(e => e.Path)).ToHashSet(StringComparer.Ordinal);
        var dataSets = corpus.Manifest.DataSets.Select(d => d.Path).ToHashSet(StringComparer.Ordinal);
        var unlisted = onDisk.Except(listed)
            .Where(p => p != CorpusManifest.FileName && !dataSets.Contains(p) && !dataSets.Contains(Parent(p)))
            .ToList();

        // Then every listed entry exists, and everything on disk is listed but the manifest and the data set and class folders
        Assert.Empty(listed.Except(onDisk));
        Assert.Empty(unlisted);
        Assert.Equal(listed.Count, corpus.Manifest.Images.Count + corpus.Manifest.Entries.Count);
        var read = CorpusManifest.Read(corpus.Root);
        Assert.Equal(listed, read.Images.Select(i => i.Path).Concat(read.Entries.Select(e => e.Path)).ToHashSet(StringComparer.Ordinal));
    }

    [Fact]
    public void EveryClassOfEveryDataSetHasItsImages()
    {
        foreach (var dataSet in corpus.Manifest.DataSets)
        {
            foreach (var name in dataSet.Classes)
            {
                var used = UsablePaths().Count(p => p.StartsWith($"{dataSet.Path}/{name}/", StringComparison.Ordinal));
                var expected = dataSet.Path switch
                {
                    "train" => CorpusWriter.TrainPerClass,
                    "test" => CorpusWriter.TestPerClass,
                    _ => name == "Unusable" ? 0 : 10,
                };
                Assert.True(used >= expected, $"{dataSet.Path}/{name}: {used} usable images, expected at least {expected}");
            }
        }

        Assert.Contains(CorpusWriter.NewlineClass, corpus.Manifest.DataSets[0].Classes);
        Assert.True(char.IsHighSurrogate(CorpusWriter.EmojiClass[CorpusWriter.EmojiIndex]) && char.IsLowSurrogate(CorpusWriter.EmojiClass[CorpusWriter.EmojiIndex + 1]));
        Assert.True(Directory.Exists(corpus.Full("train/" + CorpusWriter.EmojiClass)));
    }

    [Fact]
    public void EveryHostileImageFileDecodesOrFailsAsTheManifestSays()
    {
        // Given every hostile image file of the corpus (bombs, truncations, trailer, EXIF orientations, empty, text)
        Assert.Equal(25, corpus.Manifest.Images.Count);
        var outcomes = new List<string>();

        // When each is decoded from its file
        foreach (var image in corpus.Manifest.Images)
        {
            string? problem;
            try
            {
                using var decoded = ImageDecoder.DecodeFile(corpus.Full(image.Path));
                problem = null;
            }
            catch (InvalidImageException e)
            {
                problem = e.Problem.ToString();
            }

            var expected = image.Expect == Expectation.Used ? null : image.Problem;
            if (problem != expected)
            {
                outcomes.Add($"{image.Path}: expected {expected ?? "used"}, got {problem ?? "used"}");
            }
        }

        // Then each does what the manifest says
        Assert.Empty(outcomes);
    }

    [Theory]
    [InlineData("train/Bag/x.png", "FIFO")]
    [InlineData("train/Bag/dangling.png", "symbolic link to does-not-exist.png")]
    [InlineData("train/Bag/y.jpg", "a folder, not a file")]
    [InlineData("train/Bag/loop", "a folder, not a file")]
    public void FileSystemOdditiesAreUnreadable(string path, string reason)
    {
        var full = corpus.Full(path);

        var error = Assert.Throws<InvalidImageException>(() => ImageDecoder.DecodeFile(full));

        Assert.Equal(ImageProblem.Unreadable, error.Problem);
        Assert.Equal(full, error.Source);
        Assert.Contains(reason, error.Detail);
    }

    [Fact]
    public void AFileNameThatIsNotUtf8IsUnreadableAndSaysSo()
    {
        var entry = Assert.Single(corpus.Manifest.Entries, e => e.Kind == "name-not-utf8");

        var error = Assert.Throws<InvalidImageException>(() => ImageDecoder.DecodeFile(corpus.Full(entry.Path)));

        Assert.Equal(ImageProblem.Unreadable, error.Problem);
        Assert.Contains("not valid UTF-8", error.Detail);
    }

    [Fact]
    public async Task AFifoIsRefusedWithoutBlocking()
    {
        // Given a FIFO named x.png with no writer: opening it for reading would wait for one forever
        var fifo = corpus.Full("train/Bag/x.png");

        // When it is decoded on another thread, waiting at most 30 s for the answer
        var decoding = Task.Run(() => ImageDecoder.DecodeFile(fifo));
        try
        {
            // Then the call returns by itself with a refusal (a TimeoutException here means it blocked)
            var error = await Assert.ThrowsAsync<InvalidImageException>(() => decoding.WaitAsync(TimeSpan.FromSeconds(30)));
            Assert.Equal(ImageProblem.Unreadable, error.Problem);
            Assert.Contains("FIFO", error.Detail);
        }
        finally
        {
            if (!decoding.IsCompleted)
            {
                // Opening the FIFO for writing lets the blocked reader go on.
                using var writer = new FileStream(fifo, FileMode.Open, FileAccess.Write);
            }
        }
    }

    [Fact]
    public void AMissingFileIsUnreadable()
    {
        var missing = corpus.Full("train/Bag/missing.png");

        var error = Assert.Throws<InvalidImageException>(() => ImageDecoder.DecodeFile(missing));

        Assert.Equal(ImageProblem.Unreadable, error.Problem);
        Assert.Equal($"{missing}: not found", error.Message);
    }

    [Fact]
    public void AFileLargerThanTheLimitIsRefusedByItsSize()
    {
        var jpeg = corpus.Full("train/Ankle-boot/jpeg-with-trailer.jpg");
        var size = new FileInfo(jpeg).Length;

        var error = Assert.Throws<InvalidImageException>(() => ImageDecoder.DecodeFile(jpeg, new ImageLimits(MaxEncodedBytes: size - 1)));

        Assert.Equal(ImageProblem.TooLarge, error.Problem);
        Assert.Equal(string.Create(CultureInfo.InvariantCulture, $"file of {size} bytes is larger than the limit of {size - 1} bytes"), error.Detail);
    }

    [Fact]
    public void DecodingABombTakesNoMoreMemoryThanASmallImage()
    {
        // Given the bombs of the corpus, which decode to 1 to 17 GB, and a small real image
        string[] files =
        [
            .. corpus.Manifest.Images.Where(i => i.Problem == "TooLarge").Select(i => corpus.Full(i.Path)),
            corpus.Full("train/Ankle-boot/jpeg-with-trailer.jpg"),
        ];

        // When a separate process decodes each and measures its peak memory during the decode alone
        var lines = RunCorpusTool(["decode", .. files]);

        // Then each bomb is refused as too large with the peak within a few MB of where it started
        Assert.Equal(files.Length, lines.Count);
        foreach (var line in lines.SkipLast(1))
        {
            Assert.Contains(": TooLarge: ", line);
            var above = int.Parse(AboveBefore().Match(line).Groups[1].Value, CultureInfo.InvariantCulture);
            Assert.True(above < 32, line);
        }

        Assert.Contains("decoded 112x112", lines[^1]);
    }

    private IEnumerable<string> UsablePaths() =>
        corpus.Manifest.Entries.Where(e => e.Expect is Expectation.Used or Expectation.Excluded).Select(e => e.Path)
            .Concat(corpus.Manifest.Images.Where(i => i.Expect == Expectation.Used).Select(i => i.Path));

    private static string Parent(string path) => path.Contains('/', StringComparison.Ordinal) ? path[..path.LastIndexOf('/')] : "";

    private static void Walk(DirectoryInfo directory, string prefix, HashSet<string> paths)
    {
        foreach (var entry in directory.EnumerateFileSystemInfos())
        {
            var path = prefix + entry.Name;
            paths.Add(path);
            if (entry is DirectoryInfo folder && entry.LinkTarget is null)
            {
                Walk(folder, path + "/", paths);
            }
        }
    }

    private static List<string> RunCorpusTool(string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "mlnet-finetune-bad-input-corpus.dll"));
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        var error = process.StandardError.ReadToEndAsync();
        var lines = new List<string>();
        while (process.StandardOutput.ReadLine() is { } line)
        {
            lines.Add(line);
        }

        process.WaitForExit();
        Assert.True(process.ExitCode == 0, error.Result);
        return lines;
    }

    [GeneratedRegex(@"peak RSS \d+ MB, (\d+) MB above")]
    private static partial Regex AboveBefore();
}
