namespace MlNetFinetune.Data;

/// <summary>
/// A folder with one subfolder per class; every image file below a subfolder belongs to that class.
/// The walk never leaves the folder: symbolic links to folders are not followed (a link such as <c>loop -&gt; ..</c>
/// would otherwise relabel other classes' images or recurse forever), hidden entries (names starting with '.', e.g.
/// <c>.ipynb_checkpoints/</c>) are ignored, and entries that cannot be read are skipped, named and counted, never fatal.
/// </summary>
public sealed class ImageFolder
{
    /// <summary>File extensions read as images (the formats the decoder reads).</summary>
    public static readonly IReadOnlySet<string> ImageExtensions =
        new HashSet<string>(StringComparer.OrdinalIgnoreCase) { ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp" };

    private static readonly EnumerationOptions s_oneLevel = new()
    {
        RecurseSubdirectories = false,
        IgnoreInaccessible = false,
        AttributesToSkip = 0,
        ReturnSpecialDirectories = false,
    };

    private ImageFolder(string root, IReadOnlyList<ImageRecord> images, IReadOnlyList<string> classes, IReadOnlyList<SkippedFile> skipped, IReadOnlyList<IgnoredEntry> ignored)
    {
        Root = root;
        Images = images;
        Classes = classes;
        Skipped = skipped;
        Ignored = ignored;
    }

    /// <summary>The folder's full path.</summary>
    public string Root { get; }

    /// <summary>Images in a stable order (class, then path, ordinal), so a seed gives the same split everywhere.</summary>
    public IReadOnlyList<ImageRecord> Images { get; }

    /// <summary>Class names in ordinal order.</summary>
    public IReadOnlyList<string> Classes { get; }

    /// <summary>Image files under the class folders that cannot be used (empty, unreadable, unusable name), with the reason.</summary>
    public IReadOnlyList<SkippedFile> Skipped { get; }

    /// <summary>Entries left out on purpose: hidden files and folders, links to folders, files that are not images by name.</summary>
    public IReadOnlyList<IgnoredEntry> Ignored { get; }

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

        var skipped = new List<SkippedFile>();
        var ignored = new List<IgnoredEntry>();
        var classDirectories = new List<DirectoryInfo>();
        var looseImages = false;
        foreach (var entry in Entries(new DirectoryInfo(full), skipped))
        {
            switch (Classify(entry, ignored, skipped))
            {
                case EntryKind.Folder:
                    classDirectories.Add((DirectoryInfo)entry);
                    break;
                case EntryKind.ImageFile:
                    looseImages = true;
                    ignored.Add(new IgnoredEntry(entry.FullName, "image outside a class folder"));
                    break;
            }
        }

        if (classDirectories.Count == 0)
        {
            throw new UserInputException(looseImages
                ? $"{root}: no class subfolders; put the images of each class into a subfolder named after the class"
                : $"{root}: no images (expected one subfolder per class holding image files)");
        }

        var images = new List<ImageRecord>();
        var classes = new List<string>();
        foreach (var directory in classDirectories.OrderBy(d => d.Name, StringComparer.Ordinal))
        {
            var label = directory.Name;
            if (label.Contains('\uFFFD', StringComparison.Ordinal))
            {
                skipped.Add(new SkippedFile(directory.FullName, "folder name is not valid UTF-8, so it cannot name a class; rename it"));
                continue;
            }

            var files = new List<string>();
            var skippedBefore = skipped.Count;
            Walk(directory, files, skipped, ignored);
            files.Sort(StringComparer.Ordinal);
            images.AddRange(files.Select(f => new ImageRecord(f, label)));
            if (files.Count == 0)
            {
                throw new UserInputException(skipped.Count > skippedBefore
                    ? $"{directory.FullName}: class folder '{label}' holds no usable images ({skipped.Count - skippedBefore} unusable, e.g. {skipped[skippedBefore].Path}: {skipped[skippedBefore].Reason})"
                    : $"{directory.FullName}: class folder '{label}' holds no images");
            }

            classes.Add(label);
        }

        if (classes.Count < minimumClasses)
        {
            throw new UserInputException(
                $"{root}: found {classes.Count} class folder(s) ({string.Join(", ", classes)}); at least {minimumClasses} are needed");
        }

        return new ImageFolder(full, images, classes, skipped, ignored);
    }

    /// <summary>
    /// Every image file below <paramref name="folder"/> by name, walked as <see cref="Scan"/> walks a class folder (no
    /// links to folders followed, hidden entries left out), in ordinal order. Entries that cannot be read (a dangling
    /// link, a name that is not UTF-8, a folder that cannot be listed) are included, so that the caller reports each.
    /// </summary>
    public static IReadOnlyList<string> FindImageFiles(string folder, out IReadOnlyList<IgnoredEntry> ignored)
    {
        var files = new List<string>();
        var skipped = new List<SkippedFile>();
        var left = new List<IgnoredEntry>();
        Walk(new DirectoryInfo(Path.GetFullPath(folder)), files, skipped, left);
        ignored = left;
        return [.. files.Concat(skipped.Select(s => s.Path)).Order(StringComparer.Ordinal)];
    }

    /// <summary>Whether the file name has one of <see cref="ImageExtensions"/>.</summary>
    public static bool IsImageFile(string path) => ImageExtensions.Contains(Path.GetExtension(path));

    private static void Walk(DirectoryInfo directory, List<string> files, List<SkippedFile> skipped, List<IgnoredEntry> ignored)
    {
        foreach (var entry in Entries(directory, skipped))
        {
            switch (Classify(entry, ignored, skipped))
            {
                case EntryKind.Folder:
                    Walk((DirectoryInfo)entry, files, skipped, ignored);
                    break;
                case EntryKind.ImageFile:
                    files.Add(entry.FullName);
                    break;
            }
        }
    }

    private static List<FileSystemInfo> Entries(DirectoryInfo directory, List<SkippedFile> skipped)
    {
        try
        {
            return [.. directory.EnumerateFileSystemInfos("*", s_oneLevel)];
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException)
        {
            skipped.Add(new SkippedFile(directory.FullName, $"cannot read folder ({e.Message})"));
            return [];
        }
    }

    private enum EntryKind
    {
        Left,
        Folder,
        ImageFile,
    }

    /// <summary>Decides what an entry is, recording it as ignored or skipped when it is not taken.</summary>
    private static EntryKind Classify(FileSystemInfo entry, List<IgnoredEntry> ignored, List<SkippedFile> skipped)
    {
        if (entry.Name.StartsWith('.'))
        {
            ignored.Add(new IgnoredEntry(entry.FullName, "hidden"));
            return EntryKind.Left;
        }

        if (entry.LinkTarget is not null)
        {
            var target = ResolvedTarget(entry);
            if (target is DirectoryInfo)
            {
                ignored.Add(new IgnoredEntry(entry.FullName, "symbolic link to a folder (not followed)"));
                return EntryKind.Left;
            }

            if (target is null)
            {
                if (IsImageFile(entry.Name))
                {
                    skipped.Add(new SkippedFile(entry.FullName, $"symbolic link to {entry.LinkTarget}, which does not exist"));
                }
                else
                {
                    ignored.Add(new IgnoredEntry(entry.FullName, "dangling symbolic link"));
                }

                return EntryKind.Left;
            }
        }

        if (entry is DirectoryInfo)
        {
            return EntryKind.Folder;
        }

        if (!IsImageFile(entry.Name))
        {
            ignored.Add(new IgnoredEntry(entry.FullName, "not an image file name"));
            return EntryKind.Left;
        }

        // .NET maps bytes that are not UTF-8 to U+FFFD, so such a name cannot be opened again by the name it reports.
        if (entry.Name.Contains('\uFFFD', StringComparison.Ordinal))
        {
            skipped.Add(new SkippedFile(entry.FullName, "file name is not valid UTF-8, so the file cannot be opened by name; rename it"));
            return EntryKind.Left;
        }

        return EntryKind.ImageFile;
    }

    private static FileSystemInfo? ResolvedTarget(FileSystemInfo link)
    {
        try
        {
            var target = link.ResolveLinkTarget(returnFinalTarget: true);
            return target switch
            {
                null => null,
                _ when Directory.Exists(target.FullName) => new DirectoryInfo(target.FullName),
                _ when File.Exists(target.FullName) => new FileInfo(target.FullName),
                _ => null,
            };
        }
        catch (IOException)
        {
            // A cycle of links, or too many hops: there is nothing to read behind it.
            return null;
        }
    }
}

/// <summary>An entry left out of a scan on purpose, and why (hidden, a link to a folder, not an image by name).</summary>
public sealed record IgnoredEntry(string Path, string Reason);
