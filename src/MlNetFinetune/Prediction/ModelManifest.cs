using System.IO.Compression;
using System.Text.Json;
using MlNetFinetune.Evaluation;

namespace MlNetFinetune.Prediction;

/// <summary>Held-out figures recorded in the manifest.</summary>
public sealed record ManifestMetrics(double MicroAccuracy, double MacroAccuracy, double LogLoss, int HeldOutImages);

/// <summary>
/// What a consumer of model.zip must know, stored inside the zip next to ML.NET's own entries: the classes in score
/// order, the backbone and its input size, the feature options, the format version and the held-out metrics.
/// </summary>
/// <remarks>
/// <see cref="Precision"/> and <see cref="Calibration"/> came after format 1 was first written; a manifest without them
/// reads as fp32. They inform and need no support to run: an older Predictor runs an int8 model's graph as it is.
/// </remarks>
public sealed record ModelManifest(
    int FormatVersion,
    string Tool,
    IReadOnlyList<string> Classes,
    string Backbone,
    int ImageSize,
    string Features,
    int FeatureSize,
    string Head,
    float L2Regularization,
    ManifestMetrics HeldOut,
    string Precision = ModelManifest.Fp32,
    string? Calibration = null)
{
    /// <summary><see cref="Precision"/> of a float backbone.</summary>
    public const string Fp32 = "fp32";

    /// <summary><see cref="Precision"/> of an int8 backbone.</summary>
    public const string Int8 = "int8";

    /// <summary>The format this build writes and the newest it reads.</summary>
    public const int CurrentFormatVersion = 1;

    /// <summary>Where the manifest lies inside model.zip.</summary>
    public const string EntryName = "MlNetFinetune/manifest.json";

    /// <summary>
    /// Throws <see cref="UserInputException"/> naming <paramref name="zipPath"/> when the manifest's classes are not, in
    /// order, the class names the ML.NET model itself stores with its scores: an edited or swapped manifest would
    /// otherwise put wrong names on right scores.
    /// </summary>
    public void CheckClasses(IReadOnlyList<string> modelClasses, string zipPath)
    {
        if (!modelClasses.SequenceEqual(Classes, StringComparer.Ordinal))
        {
            var at = Enumerable.Range(0, Math.Min(modelClasses.Count, Classes.Count)).FirstOrDefault(i => !string.Equals(modelClasses[i], Classes[i], StringComparison.Ordinal));
            var detail = modelClasses.Count != Classes.Count
                ? $"the model has {modelClasses.Count} classes, the manifest {Classes.Count}"
                : $"score {at} is '{modelClasses[at]}' in the model but '{Classes[at]}' in the manifest";
            throw new UserInputException($"{zipPath}: the manifest's class list does not match the model ({detail}); the file was edited or assembled from two models");
        }
    }

    /// <summary>Writes this manifest into the zip at <paramref name="zipPath"/>, replacing any manifest there.</summary>
    public void WriteInto(string zipPath)
    {
        using var archive = ZipFile.Open(zipPath, ZipArchiveMode.Update);
        archive.GetEntry(EntryName)?.Delete();
        using var stream = archive.CreateEntry(EntryName).Open();
        JsonSerializer.Serialize(stream, this, ReportWriter.JsonOptions);
    }

    /// <summary>Reads the manifest of <paramref name="zipPath"/>; throws <see cref="UserInputException"/> naming the file and the problem.</summary>
    public static ModelManifest ReadFrom(string zipPath)
    {
        if (!File.Exists(zipPath))
        {
            throw new UserInputException($"{zipPath}: model file not found");
        }

        try
        {
            using var archive = ZipFile.OpenRead(zipPath);
            var entry = archive.GetEntry(EntryName)
                ?? throw new UserInputException($"{zipPath}: not an MlNetFinetune model (no {EntryName} inside); train one with the Trainer");
            using var stream = entry.Open();
            var manifest = JsonSerializer.Deserialize<ModelManifest>(stream, ReportWriter.JsonOptions)
                ?? throw new UserInputException($"{zipPath}: empty model manifest");
            if (manifest.FormatVersion > CurrentFormatVersion)
            {
                throw new UserInputException(
                    $"{zipPath}: model format {manifest.FormatVersion} is newer than this Predictor reads ({CurrentFormatVersion}); update MlNetFinetune");
            }

            if (manifest.FormatVersion < 1)
            {
                throw new UserInputException($"{zipPath}: model format {manifest.FormatVersion} is not a format MlNetFinetune ever wrote (1 to {CurrentFormatVersion})");
            }

            if (manifest.Classes is null || manifest.Classes.Count < 2)
            {
                throw new UserInputException($"{zipPath}: model manifest lists no classes");
            }

            if (manifest.Classes.FirstOrDefault(string.IsNullOrEmpty) is not null)
            {
                throw new UserInputException($"{zipPath}: model manifest lists an empty class name");
            }

            if (manifest.Classes.GroupBy(c => c, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1) is { } twice)
            {
                throw new UserInputException($"{zipPath}: model manifest lists the class '{twice.Key}' twice");
            }

            return manifest;
        }
        catch (Exception e) when (e is InvalidDataException or JsonException or IOException && e is not FileNotFoundException)
        {
            throw new UserInputException($"{zipPath}: not a readable model file (truncated or corrupted zip: {e.Message.Split('\n')[0].Trim()})");
        }
    }
}
