using MlNetFinetune.Explanations;
using MlNetFinetune.Prediction;

namespace MlNetFinetune.Predictor;

/// <summary>
/// <c>--explain &lt;folder&gt;</c>: for every input image, one PNG in the folder (the image, where the model looked for
/// its prediction, the top classes) besides the usual result line.
/// </summary>
public static class ExplainedImages
{
    /// <summary>
    /// Appended to the input's whole file name (photo.jpg becomes photo.jpg.explained.png): inputs that differ only in
    /// their extension get pictures of their own, and no picture can overwrite an input.
    /// </summary>
    public const string Suffix = ".explained.png";

    /// <summary>
    /// Explains <paramref name="files"/> in order, writes each picture under <paramref name="folder"/> at the image's
    /// path relative to the inputs' common folder, prints each result row to <paramref name="output"/> and each
    /// unreadable image to <paramref name="error"/>; returns how many images could not be explained.
    /// </summary>
    public static int Write(ImageClassifier classifier, IReadOnlyList<string> files, int top, ResultFormat format, string folder, TextWriter output, TextWriter error)
    {
        var root = CommonFolder(files);
        var failed = 0;
        foreach (var file in files)
        {
            try
            {
                var bytes = ReadBytes(file);
                var explanation = classifier.Explain(bytes, file, top);
                var picture = ExplanationPicture.Png(bytes, explanation, Path.GetFileName(file));
                var target = Path.Combine(folder, Path.GetRelativePath(root, Path.GetFullPath(file)) + Suffix);
                AtomicFile.Write(target, temporary => File.WriteAllBytes(temporary, picture));
                output.WriteLine(ResultRows.Row(format, top, file, new ClassificationResult(explanation.Label, explanation.Confidence, explanation.Top), null));
            }
            catch (InvalidDataException e)
            {
                error.WriteLine($"error: {e.Message}");
                failed++;
            }
        }

        return failed;
    }

    /// <summary>The deepest folder holding every file: pictures keep the inputs' class subfolders, so equal names do not collide.</summary>
    internal static string CommonFolder(IReadOnlyList<string> files)
    {
        var folders = files.Select(f => Path.GetDirectoryName(Path.GetFullPath(f))!).Distinct(StringComparer.Ordinal).ToList();
        var common = folders[0];
        foreach (var folder in folders.Skip(1))
        {
            while (!(folder == common || folder.StartsWith(common.TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar, StringComparison.Ordinal)))
            {
                common = Path.GetDirectoryName(common) ?? Path.GetPathRoot(common)!;
            }
        }

        return common;
    }

    private static byte[] ReadBytes(string file)
    {
        try
        {
            return File.ReadAllBytes(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidDataException($"{file}: cannot read ({e.Message})", e);
        }
    }
}
