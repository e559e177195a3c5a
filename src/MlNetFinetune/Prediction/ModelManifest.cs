using System.IO.Compression;
using System.Text.Json;
using System.Text.Json.Serialization;
using MlNetFinetune.Evaluation;
using MlNetFinetune.Images;

namespace MlNetFinetune.Prediction;

/// <summary>Held-out figures recorded in the manifest.</summary>
public sealed record ManifestMetrics(double MicroAccuracy, double MacroAccuracy, double LogLoss, int HeldOutImages);

/// <summary>Recorded in the manifest of a model whose backbone was fine-tuned.</summary>
/// <param name="Stages">Backbone stages trained (from the top).</param>
/// <param name="Epochs">Epochs asked for.</param>
/// <param name="EpochsRun">Epochs finished (fewer after early stopping or Ctrl+C).</param>
/// <param name="BestEpoch">The epoch whose weights the backbone graph holds (0: the pretrained weights kept).</param>
/// <param name="StopReason">"completed", "cancelled", or why it stopped early.</param>
public sealed record ManifestFineTuning(int Stages, int Epochs, int EpochsRun, int BestEpoch, string StopReason);

/// <summary>
/// What a consumer of model.zip must know, stored inside the zip next to ML.NET's own entries: the classes in score
/// order, the backbone and its input size, the feature options, how transparent pixels were resolved, the format
/// version and the held-out metrics.
/// </summary>
/// <param name="FormatVersion">The manifest format the model was written in (see <see cref="CurrentFormatVersion"/>).</param>
/// <param name="Tool">The tool and version that wrote the model.</param>
/// <param name="Classes">The class names, in the order of the scores.</param>
/// <param name="Backbone">The pretrained network: "resnet18", or "onnx:" and the file name of the user's graph.</param>
/// <param name="ImageSize">Side in pixels of the square image the backbone takes.</param>
/// <param name="Features">The backbone taps the features come from, e.g. "s2g2+s3g2+s4".</param>
/// <param name="FeatureSize">Length of the bottleneck feature vector.</param>
/// <param name="Head">The head type, e.g. "softmax".</param>
/// <param name="L2Regularization">The head's L2 strength.</param>
/// <param name="HeldOut">The held-out figures of the training run.</param>
/// <param name="Alpha">What transparent pixels became when the model was trained; the Predictor decodes the same way.
/// Null in models of format 1, which were all trained with <see cref="ImageDecoder.DefaultAlpha"/>.</param>
/// <param name="Precision">The backbone's number format: "fp32", or "int8" for a backbone quantized by the Trainer
/// (<c>--precision int8</c>). "fp32" in manifests written before int8 existed.</param>
/// <param name="Calibration">For int8: how the activation ranges were calibrated, e.g. "percentile 99.999 on 260
/// training images"; null for fp32.</param>
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
    AlphaPolicy? Alpha = null,
    string Precision = ModelManifest.Fp32,
    string? Calibration = null)
{
    /// <summary><see cref="Precision"/> of a float backbone.</summary>
    public const string Fp32 = "fp32";

    /// <summary><see cref="Precision"/> of an int8 backbone.</summary>
    public const string Int8 = "int8";

    /// <summary>
    /// Set when the backbone graph inside holds fine-tuned weights (<c>--fine-tune</c>); null for the pretrained
    /// backbone. Readers need nothing else: the fine-tuned graph has the pretrained one's inputs and outputs.
    /// </summary>
    public ManifestFineTuning? FineTuning { get; init; }

    /// <summary>
    /// The format this build writes and the newest it reads. 2 added <see cref="Alpha"/>: a Predictor that reads only
    /// format 1 would ignore it and score transparent images on black, so it must refuse the file instead.
    /// </summary>
    public const int CurrentFormatVersion = 2;

    /// <summary>Where the manifest lies inside model.zip.</summary>
    public const string EntryName = "MlNetFinetune/manifest.json";

    /// <summary>How images must be decoded for this model: as they were when it was trained.</summary>
    [JsonIgnore]
    public AlphaPolicy InputAlpha => Alpha ?? ImageDecoder.DefaultAlpha;

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
