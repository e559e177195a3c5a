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
    ManifestMetrics HeldOut)
{
    /// <summary>The format this build writes and the newest it reads.</summary>
    public const int CurrentFormatVersion = 1;

    public const string EntryName = "MlNetFinetune/manifest.json";

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

            if (manifest.Classes is null || manifest.Classes.Count < 2)
            {
                throw new UserInputException($"{zipPath}: model manifest lists no classes");
            }

            return manifest;
        }
        catch (Exception e) when (e is InvalidDataException or JsonException or IOException && e is not FileNotFoundException)
        {
            throw new UserInputException($"{zipPath}: not a readable model file (truncated or corrupted zip: {e.Message.Split('\n')[0].Trim()})");
        }
    }
}
