namespace MlNetFinetune.Data;

/// <summary>A folder with one subfolder per class; every image file below a subfolder belongs to that class.</summary>
public sealed class ImageFolder
{
    /// <summary>File extensions read as images (the formats ML.NET's SkiaSharp image loader decodes).</summary>
    public static readonly IReadOnlySet<string> ImageExtensions =
        new HashSet<string>(StringComparer.OrdinalIgnoreCase) { ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp" };

    private ImageFolder(string root, IReadOnlyList<ImageRecord> images, IReadOnlyList<string> classes, IReadOnlyList<SkippedFile> skipped)
    {
        Root = root;
        Images = images;
        Classes = classes;
        Skipped = skipped;
    }

    public string Root { get; }

    /// <summary>Images in a stable order (class, then path, ordinal), so a seed gives the same split everywhere.</summary>
    public IReadOnlyList<ImageRecord> Images { get; }

    /// <summary>Class names in ordinal order.</summary>
    public IReadOnlyList<string> Classes { get; }

    /// <summary>Files under the class folders that were not taken (empty files).</summary>
    public IReadOnlyList<SkippedFile> Skipped { get; }

    /// <summary>
    /// Scans <paramref name="root"/>. Throws <see cref="UserInputException"/> naming the folder when it is missing,
    /// has no class subfolders, has fewer than <paramref name="minimumClasses"/> classes, or a class folder holds no image.
    /// </summary>
    public static ImageFolder Scan(string root, int minimumClasses = 2)
    {
        var full = Path.GetFullPath(root);
        if (!Directory.Exists(full))
        {
            throw new UserInputException($"{root}: folder not found");
        }

        var classDirectories = Directory.GetDirectories(full).OrderBy(d => d, StringComparer.Ordinal).ToList();
        if (classDirectories.Count == 0)
        {
            var looseImages = Directory.EnumerateFiles(full).Any(IsImageFile);
            throw new UserInputException(looseImages
                ? $"{root}: no class subfolders; put the images of each class into a subfolder named after the class"
                : $"{root}: no images (expected one subfolder per class holding image files)");
        }

        var images = new List<ImageRecord>();
        var skipped = new List<SkippedFile>();
        var classes = new List<string>();
        foreach (var directory in classDirectories)
        {
            var label = Path.GetFileName(directory);
            var files = Directory.EnumerateFiles(directory, "*", SearchOption.AllDirectories)
                .Where(IsImageFile)
                .OrderBy(f => f, StringComparer.Ordinal)
                .ToList();
            var taken = 0;
            foreach (var file in files)
            {
                if (new FileInfo(file).Length == 0)
                {
                    skipped.Add(new SkippedFile(file, "empty file (0 bytes)"));
                    continue;
                }

                images.Add(new ImageRecord(file, label));
                taken++;
            }

            if (taken == 0)
            {
                throw new UserInputException($"{directory}: class folder '{label}' holds no images");
            }

            classes.Add(label);
        }

        if (classes.Count < minimumClasses)
        {
            throw new UserInputException(
                $"{root}: found {classes.Count} class folder(s) ({string.Join(", ", classes)}); at least {minimumClasses} are needed");
        }

        return new ImageFolder(full, images, classes, skipped);
    }

    public static bool IsImageFile(string path) => ImageExtensions.Contains(Path.GetExtension(path));
}
