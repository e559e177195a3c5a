using Microsoft.ML;
using MlNetFinetune.Backbones;
using MlNetFinetune.Backbones.Quantization;
using MlNetFinetune.Evaluation;
using MlNetFinetune.Images;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Prediction;

namespace MlNetFinetune.Training;

/// <summary>Writes model.zip: the composed ML.NET chain with the backbone graph inside, plus the manifest.</summary>
internal static class ModelFile
{
    /// <summary>Composes and saves the model atomically; cancelling before the write leaves the old file in place.</summary>
    public static void Save(MLContext ml, IBackbone backbone, TrainedHead head, IReadOnlyList<string> classNames,
        EvaluationReport report, AlphaPolicy alpha, string workspace, string modelPath, CancellationToken cancellation)
    {
        var graphPath = ChainGraph(backbone, workspace);
        var model = ImageClassificationChain.Compose(ml, head.Transformer, graphPath, backbone.ImageSize);
        var manifest = new ModelManifest(
            ModelManifest.CurrentFormatVersion,
            $"MlNetFinetune {typeof(ModelFile).Assembly.GetName().Version}",
            classNames,
            backbone.Name,
            backbone.ImageSize,
            backbone.Features,
            backbone.FeatureSize,
            head.Name,
            head.L2Regularization,
            new ManifestMetrics(report.MicroAccuracy, report.MacroAccuracy, report.LogLoss, report.Training.HeldOutImages),
            alpha,
            backbone is Int8Backbone ? ModelManifest.Int8 : ModelManifest.Fp32,
            (backbone as Int8Backbone)?.Calibration)
        {
            FineTuning = report.FineTuning is { } f
                ? new ManifestFineTuning(f.Stages, f.Epochs, f.History.Count(h => h.Epoch > 0), f.BestEpoch, f.StopReason)
                : null,
        };
        var inputs = ml.Data.LoadFromEnumerable(Array.Empty<ImageInput>());
        cancellation.ThrowIfCancellationRequested();
        AtomicFile.Write(modelPath, temporary =>
        {
            ml.Model.Save(model, inputs.Schema, temporary);
            manifest.WriteInto(temporary);
        });
    }

    /// <summary>
    /// The batch-1 backbone graph the saved chain applies, written once per backbone fingerprint under
    /// <paramref name="workspace"/>: ML.NET reads the file once when the chain is fitted and then embeds its bytes in the
    /// saved zip.
    /// </summary>
    public static string ChainGraph(IBackbone backbone, string workspace)
    {
        var graphPath = Path.Combine(workspace, "graphs", $"{backbone.Fingerprint}-chain.onnx");
        if (!File.Exists(graphPath))
        {
            AtomicFile.Write(graphPath, temporary => File.WriteAllBytes(temporary, backbone.BuildGraph(batchSize: 1)));
        }

        return graphPath;
    }
}
