using System.Text.Json;
using SkiaSharp;

namespace MlNetFinetune.BadInputCorpus;

/// <summary>
/// Writes the bad-input corpus: class-folder data sets of real images (copied from the committed Fashion-MNIST sample)
/// with hostile entries among them, and <see cref="CorpusManifest.FileName"/> saying what the tools must do with each.
/// <list type="bullet">
/// <item><c>train/</c>: six classes of 20 images that must train. <c>Ankle-boot/</c> also holds every hostile image file
/// (bombs, truncations with and without fake end markers, a trailer, EXIF orientations, an empty file, text named .png);
/// <c>Bag/</c> holds the file-system oddities (a FIFO named x.png, links <c>loop -&gt; ..</c> and <c>self -&gt; .</c>, a
/// dangling link, a folder named y.jpg, a name that is not UTF-8, a hidden <c>.ipynb_checkpoints/</c>, a copy of a
/// Trouser image); a hidden <c>.ipynb_checkpoints/</c> sits beside the classes; one class name holds a newline, another
/// an emoji (a surrogate pair at UTF-16 index 22-23).</item>
/// <item><c>test/</c>: five held-out images per class and a byte-identical copy of a training image.</item>
/// <item><c>broken-class/</c>: two good classes and one whose every image is undecodable.</item>
/// </list>
/// </summary>
public static class CorpusWriter
{
    /// <summary>Images per class in <c>train/</c>.</summary>
    public const int TrainPerClass = 20;

    /// <summary>Images per class in <c>test/</c>.</summary>
    public const int TestPerClass = 5;

    /// <summary>A class name with a newline in it.</summary>
    public const string NewlineClass = "Dress\nwith a newline";

    /// <summary>UTF-16 index of the emoji's high surrogate in <see cref="EmojiClass"/>: cutting the name to 23 characters splits the pair.</summary>
    public const int EmojiIndex = 22;

    /// <summary>A class name with an emoji (U+1F9E5, a surrogate pair) at UTF-16 index 22-23.</summary>
    public static readonly string EmojiClass = "Coat with a long name \U0001F9E5!";

    private const string HostileClass = "Ankle-boot";

    /// <summary>The name, not valid UTF-8, of one file in train/Bag.</summary>
    private static readonly byte[] s_rawName = [.. "bad-"u8, 0xFF, 0xFE, .. "-name.png"u8];
    private const string OddClass = "Bag";

    /// <summary>
    /// Writes the corpus into <paramref name="root"/> (created; it must not exist or be empty) from the class folders of
    /// <paramref name="sampleFolder"/> (data/fashion-mnist-sample) and returns its manifest, also written to the folder.
    /// </summary>
    public static CorpusManifest Write(string root, string sampleFolder)
    {
        if (Directory.Exists(root) && Directory.EnumerateFileSystemEntries(root).Any())
        {
            throw new IOException($"{root}: folder is not empty; the corpus is written into a new or empty folder");
        }

        var writer = new Writer(Directory.CreateDirectory(root).FullName, sampleFolder);
        var manifest = writer.Run();
        File.WriteAllText(Path.Combine(root, CorpusManifest.FileName), JsonSerializer.Serialize(manifest, CorpusManifest.JsonOptions));
        return manifest;
    }

    /// <summary>
    /// Deletes a corpus folder. <see cref="Directory.Delete(string, bool)"/> alone cannot: it finds the file whose name is
    /// not UTF-8 under the name .NET reports (with U+FFFD), which does not exist, so that file is removed by its bytes first.
    /// </summary>
    public static void Delete(string root)
    {
        Posix.Remove(Path.Combine(root, "train", OddClass), s_rawName);
        Directory.Delete(root, recursive: true);
    }

    private sealed class Writer(string root, string sampleFolder)
    {
        private readonly List<CorpusImage> _images = [];
        private readonly List<CorpusEntry> _entries = [];

        /// <summary>(corpus class, sample class) for train/ and test/.</summary>
        private static readonly (string Class, string Sample)[] s_classes =
        [
            (HostileClass, "Ankle-boot"), (OddClass, "Bag"), ("Sandal", "Sandal"), ("Trouser", "Trouser"), (NewlineClass, "Dress"), (EmojiClass, "Coat"),
        ];

        public CorpusManifest Run()
        {
            var classes = s_classes.Select(c => c.Class).Order(StringComparer.Ordinal).ToList();
            foreach (var (name, sample) in s_classes)
            {
                CopySamples("train", name, sample, 0, TrainPerClass);
                CopySamples("test", name, sample, TrainPerClass, TestPerClass);
            }

            WriteHostileImages($"train/{HostileClass}");
            WriteOddities($"train/{OddClass}");
            WriteHidden("train/.ipynb_checkpoints", "Pullover", 25, 3);
            var trouser = $"train/Trouser/{SampleNames("Trouser")[0]}";
            CopyFile(trouser, $"train/{OddClass}/copy-of-a-trouser.png", "duplicate-across-classes", Expectation.Used, OddClass,
                "byte-identical to a Trouser training image under another label: used, and reported as a duplicate", trouser);
            var leaked = $"train/{OddClass}/{SampleNames("Bag")[0]}";
            CopyFile(leaked, $"test/{OddClass}/copy-of-a-training-image.png", "held-out-duplicate", Expectation.Excluded, OddClass,
                "byte-identical to a training image: reported, and left out of the held-out score", leaked);
            WriteBrokenClass();

            return new CorpusManifest(1,
            [
                new CorpusDataSet("train", "training", classes, MustTrain: true,
                    "every hostile entry is skipped or ignored with its reason; the six classes train, including one whose name has a newline and one with an emoji at UTF-16 index 22"),
                new CorpusDataSet("test", "held-out", classes, MustTrain: true,
                    "held-out images for train/; one is a copy of a training image", TrainedWith: "train"),
                new CorpusDataSet("broken-class", "training", ["Bag", "Trouser", "Unusable"], MustTrain: false,
                    "class 'Unusable' has no decodable image: an error naming it (or, if dropped, a loud warning and the report lists it), never a silent 2-class model"),
            ],
            [.. _images.OrderBy(i => i.Path, StringComparer.Ordinal)],
            [.. _entries.OrderBy(e => e.Path, StringComparer.Ordinal)]);
        }

        private void WriteHostileImages(string folder)
        {
            var samples = SampleFiles("Ankle-boot");
            using var enlarged = HostileImages.Enlarged(File.ReadAllBytes(samples[26]), 112);
            var png = HostileImages.Encode(enlarged, SKEncodedImageFormat.Png);
            var jpeg = HostileImages.Encode(enlarged, SKEncodedImageFormat.Jpeg);
            var webp = HostileImages.Encode(enlarged, SKEncodedImageFormat.Webp);
            using var other = HostileImages.Enlarged(File.ReadAllBytes(samples[27]), 112);
            var otherJpeg = HostileImages.Encode(other, SKEncodedImageFormat.Jpeg);
            using var gifSource = HostileImages.Enlarged(File.ReadAllBytes(samples[28]), 64);

            void Hostile(string name, string kind, byte[] bytes, string problem, string note) =>
                Image(folder, name, kind, bytes, Expectation.Skipped, problem, note);

            Hostile("gif-frame-bomb-16000.gif", "gif-frame-bomb", HostileImages.GifFrameBomb(16000), "TooLarge",
                "29 bytes: a 10x10 logical screen and one 16000x16000 frame (1 GB of pixels once decoded)");
            Hostile("gif-frame-bomb-30000.gif", "gif-frame-bomb", HostileImages.GifFrameBomb(30000), "TooLarge",
                "29 bytes: a 10x10 logical screen and one 30000x30000 frame (3.6 GB of pixels once decoded)");
            Hostile("png-declares-65535x65535.png", "png-declared-size", HostileImages.PngDeclaring(65535, 65535), "TooLarge",
                "a PNG of about 69 bytes whose header declares 65535x65535");
            Hostile("png-1bit-30000x30000.png", "png-real-bomb", HostileImages.PngOneBitBlank(30000), "TooLarge",
                "a real, complete 1-bit PNG of 30000x30000 (about 109 KB; 3.6 GB of 32-bit pixels once decoded)");
            Hostile("jpeg-declares-65535x65535.jpg", "jpeg-declared-size", HostileImages.JpegDeclaring(jpeg, 65535, 65535), "TooLarge",
                "a real JPEG whose frame header (SOF0) is patched to declare 65535x65535");
            Hostile("bmp-declares-100000x100000.bmp", "bmp-declared-size", HostileImages.BmpDeclaring(100000, 100000), "TooLarge",
                "a 54-byte BMP header declaring 100000x100000");
            Hostile("webp-canvas-20000x20000.webp", "webp-declared-size", HostileImages.WebPDeclaring(20000, 20000), "TooLarge",
                "an extended WebP whose canvas (VP8X) is 20000x20000");
            Hostile("webp-frame-bomb-16000.webp", "webp-frame-bomb", HostileImages.WebPFrameBomb(16000), "TooLarge",
                "an animated WebP with a 16x16 canvas and one 16000x16000 frame (ANMF)");
            Hostile("png-truncated-iend-appended.png", "png-truncated-fake-end", HostileImages.TruncatedPngWithEnd(png), "Truncated",
                "a real PNG cut in the middle of its image data, with a whole IEND chunk appended");
            Hostile("jpeg-truncated-ffd9-appended.jpg", "jpeg-truncated-fake-end", HostileImages.TruncatedJpegWithEnd(jpeg), "Truncated",
                "a real JPEG cut 60% into its image data, with the end marker FFD9 appended");
            Hostile("png-truncated.png", "truncated", HostileImages.Truncated(png, 0.6), "Truncated", "the first 60% of a real PNG");
            Hostile("jpeg-truncated.jpg", "truncated", HostileImages.Truncated(jpeg, 0.6), "Truncated", "the first 60% of a real JPEG");
            Hostile("gif-truncated.gif", "truncated", HostileImages.Truncated(HostileImages.Gif(gifSource), 0.6), "Truncated", "the first 60% of a real GIF");
            Hostile("webp-truncated.webp", "truncated", HostileImages.Truncated(webp, 0.6), "Truncated", "the first 60% of a real WebP");
            Hostile("empty.png", "empty", [], "Empty", "0 bytes");
            Hostile("not-an-image.png", "not-an-image", HostileImages.NotAnImage(), "UnknownFormat", "HTML text named .png");
            Image(folder, "jpeg-with-trailer.jpg", "jpeg-trailer", HostileImages.WithTrailer(otherJpeg), Expectation.Used, null,
                "a whole JPEG followed by 100 bytes (an MP4 box header, then noise), as motion photos and camera trailers are: must be used");

            using var upright = HostileImages.UprightPattern(File.ReadAllBytes(samples[29]));
            for (var orientation = 1; orientation <= 8; orientation++)
            {
                using var stored = HostileImages.Stored(upright, orientation);
                var bytes = HostileImages.WithExifOrientation(HostileImages.Encode(stored, SKEncodedImageFormat.Jpeg, 95), orientation);
                _images.Add(new CorpusImage($"{folder}/exif-orientation-{orientation}.jpg", "exif-orientation", Expectation.Used, null, HostileClass,
                    $"stored turned/mirrored with EXIF orientation {orientation}; decoded upright it is {HostileImages.UprightWidth}x{HostileImages.UprightHeight} with a red band along the top and a blue square top-left",
                    orientation));
                WriteBytes($"{folder}/exif-orientation-{orientation}.jpg", bytes);
            }
        }

        private void WriteOddities(string folder)
        {
            var full = Full(folder);
            var fifo = $"{folder}/x.png";
            Posix.CreateFifo(Full(fifo));
            _entries.Add(new CorpusEntry(fifo, "fifo", Expectation.Skipped, "Unreadable", OddClass,
                "a FIFO named like an image: opening it for reading would wait forever for a writer"));

            Directory.CreateSymbolicLink(Path.Combine(full, "loop"), "..");
            _entries.Add(new CorpusEntry($"{folder}/loop", "link-to-parent", Expectation.Ignored, Note: "symbolic link to .. : followed, it would relabel every other class's images as this class"));
            Directory.CreateSymbolicLink(Path.Combine(full, "self"), ".");
            _entries.Add(new CorpusEntry($"{folder}/self", "link-to-self", Expectation.Ignored, Note: "symbolic link to . : followed, it recurses without end"));
            File.CreateSymbolicLink(Path.Combine(full, "dangling.png"), "does-not-exist.png");
            _entries.Add(new CorpusEntry($"{folder}/dangling.png", "dangling-link", Expectation.Skipped, "Unreadable", OddClass, "symbolic link to a file that does not exist"));

            var inside = SampleFiles("Bag")[28];
            Directory.CreateDirectory(Full($"{folder}/y.jpg"));
            _entries.Add(new CorpusEntry($"{folder}/y.jpg", "folder-named-like-image", Expectation.Folder, "Unreadable", Note: "a folder named like an image file; given alone as an image, it is unreadable"));
            CopySample(inside, $"{folder}/y.jpg/{Path.GetFileName(inside)}", OddClass);

            var unnamed = $"{folder}/not-utf8.png";
            File.Copy(SampleFiles("Bag")[27], Full(unnamed));
            var reported = Posix.RenameToRawName(Full(unnamed), s_rawName);
            _entries.Add(new CorpusEntry($"{folder}/{reported}", "name-not-utf8", Expectation.Skipped, "Unreadable", OddClass,
                "a real image whose file name holds the bytes FF FE, which are not UTF-8: .NET reports them as U+FFFD and cannot open the file by that name"));

            WriteHidden($"{folder}/.ipynb_checkpoints", "Bag", 25, 2);
        }

        private void WriteHidden(string folder, string sampleClass, int first, int count)
        {
            Directory.CreateDirectory(Full(folder));
            _entries.Add(new CorpusEntry(folder, "hidden-folder", Expectation.Ignored, Note: "a hidden folder (Jupyter checkpoints); beside the classes it would become a class"));
            foreach (var file in SampleFiles(sampleClass).Skip(first).Take(count))
            {
                var path = $"{folder}/{Path.GetFileName(file)}";
                File.Copy(file, Full(path));
                _entries.Add(new CorpusEntry(path, "image-in-hidden-folder", Expectation.Ignored, Note: "a real image inside a hidden folder: ignored with the folder"));
            }
        }

        private void WriteBrokenClass()
        {
            CopySamples("broken-class", "Bag", "Bag", 30, 10);
            CopySamples("broken-class", "Trouser", "Trouser", 30, 10);
            using var enlarged = HostileImages.Enlarged(File.ReadAllBytes(SampleFiles("Sneaker")[0]), 112);
            var png = HostileImages.Encode(enlarged, SKEncodedImageFormat.Png);
            Entry("broken-class/Unusable/not-an-image.png", "not-an-image", HostileImages.NotAnImage(), "UnknownFormat", "HTML text named .png");
            Entry("broken-class/Unusable/cut.png", "png-truncated-fake-end", HostileImages.TruncatedPngWithEnd(png), "Truncated", "a real PNG cut short, with IEND appended");
            Entry("broken-class/Unusable/empty.png", "empty", [], "Empty", "0 bytes");

            void Entry(string path, string kind, byte[] bytes, string problem, string note)
            {
                WriteBytes(path, bytes);
                _entries.Add(new CorpusEntry(path, kind, Expectation.Skipped, problem, "Unusable", note));
            }
        }

        private void Image(string folder, string name, string kind, byte[] bytes, Expectation expect, string? problem, string note)
        {
            var path = $"{folder}/{name}";
            WriteBytes(path, bytes);
            _images.Add(new CorpusImage(path, kind, expect, problem, HostileClass, note));
        }

        private void CopySamples(string set, string name, string sampleClass, int skip, int take)
        {
            foreach (var file in SampleFiles(sampleClass).Skip(skip).Take(take))
            {
                CopySample(file, $"{set}/{name}/{Path.GetFileName(file)}", name);
            }
        }

        private void CopySample(string file, string path, string label)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Full(path))!);
            File.Copy(file, Full(path));
            _entries.Add(new CorpusEntry(path, "image", Expectation.Used, Label: label));
        }

        private void CopyFile(string from, string to, string kind, Expectation expect, string label, string note, string duplicateOf)
        {
            File.Copy(Full(from), Full(to));
            _entries.Add(new CorpusEntry(to, kind, expect, Label: label, Note: note, DuplicateOf: duplicateOf));
        }

        private void WriteBytes(string path, byte[] bytes)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Full(path))!);
            File.WriteAllBytes(Full(path), bytes);
        }

        private string Full(string path) => Path.Combine(root, path.Replace('/', Path.DirectorySeparatorChar));

        private string[] SampleFiles(string sampleClass) =>
            [.. Directory.GetFiles(Path.Combine(sampleFolder, sampleClass), "*.png").Order(StringComparer.Ordinal)];

        private string[] SampleNames(string sampleClass) => [.. SampleFiles(sampleClass).Select(f => Path.GetFileName(f))];
    }

    /// <summary>The committed sample, found above <paramref name="start"/> (the working folder or the program's).</summary>
    public static string? FindSample(string start)
    {
        for (var directory = new DirectoryInfo(start); directory is not null; directory = directory.Parent)
        {
            var candidate = Path.Combine(directory.FullName, "data", "fashion-mnist-sample");
            if (Directory.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }
}
