using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Microsoft.ML;
using MlNetFinetune.Backbones;
using MlNetFinetune.Evaluation;

namespace MlNetFinetune.Training.FineTuning;

/// <summary>
/// The training run's fine-tuning step: fine-tunes the built-in backbone on the run's training images, validated on its
/// validation images, and returns the fine-tuned network as a backbone of its own. Everything after it (bottleneck
/// features, head, saved chain, Predictor) takes that backbone exactly as it takes the pretrained one.
/// </summary>
internal static class BackboneFineTuning
{
    /// <summary>Name of the fine-tuned backbone in reports and the manifest.</summary>
    public const string BackboneName = "resnet18-finetuned";

    private static readonly TimeSpan s_progressInterval = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Fine-tunes <paramref name="pretrained"/>. Cancelled before the first epoch finished it throws
    /// <see cref="OperationCanceledException"/>; later it returns the best epoch so far (the report says "cancelled").
    /// </summary>
    public static (ResNet18Backbone Backbone, FineTuningReport Report) Run(
        TrainingOptions options, TrainingImages images, ResNet18Backbone pretrained, string workspace, Action<string> log, CancellationToken cancellation)
    {
        var fineTune = options.FineTune!;
        var headBackbone = HeadTapsAboveCut(pretrained.Options, fineTune.Stages);
        var classes = images.Data.Classes;
        var labels = classes.Select((name, index) => (name, index)).ToDictionary(c => c.name, c => c.index, StringComparer.Ordinal);
        var ml = new MLContext(options.Seed);
        var (limits, alpha) = (options.Featurization.Limits, options.Featurization.Alpha);
        var training = LabelledImages.FromFiles(ml, [.. images.Train.Select(i => (i.Path, labels[i.Label]))], pretrained.ImageSize, limits: limits, alpha: alpha);
        var validation = LabelledImages.FromFiles(ml, [.. images.Validation.Select(i => (i.Path, labels[i.Label]))], pretrained.ImageSize, limits: limits, alpha: alpha);
        var checkpoints = CheckpointFolder(workspace, options.OutputFolder);

        log(string.Create(CultureInfo.InvariantCulture,
            $"Fine-tuning the top {fineTune.Stages} stage(s) of {pretrained.Describe()} for {fineTune.Epochs} epoch(s): {fineTune.Describe()}; head on {headBackbone.Features}; checkpoints in {checkpoints}{(options.Resume ? " (resuming)" : "")}"));
        var lastProgress = Stopwatch.StartNew();
        var progress = new SynchronousProgress<FineTuneProgress>(p =>
        {
            if (lastProgress.Elapsed >= s_progressInterval)
            {
                lastProgress.Restart();
                log(string.Create(CultureInfo.InvariantCulture,
                    $"  {p.Phase}{(p.Epoch > 0 ? $" epoch {p.Epoch}" : "")}: {p.Done}{(p.Total > 0 ? $"/{p.Total}" : "")} images, {p.ImagesPerSecond:F1} images/s"));
            }
        });
        var epochs = new SynchronousProgress<FineTuneEpoch>(e => log(DescribeEpoch(e, fineTune.Epochs)));

        var result = new FineTuner(fineTune, headBackbone).Run(training, validation, classes.Count, checkpoints, options.Resume, epochs, progress, cancellation);
        var best = result.BestEpoch == FineTuner.NoEpoch ? "none (no finite validation loss: the pretrained weights are kept)" : result.BestEpoch.ToString(CultureInfo.InvariantCulture);
        log(string.Create(CultureInfo.InvariantCulture,
            $"Fine-tuning {result.StopReason}; best epoch {best}; frozen part cached in {result.CacheSeconds:F1} s ({result.CacheBytes / (1 << 20)} MB)"));

        var report = new FineTuningReport(fineTune.Describe(), fineTune.Stages, fineTune.Epochs, result.BestEpoch, result.StopReason,
            result.History, headBackbone.Features, result.CacheSeconds, result.CacheBytes, options.Resume);
        return (new ResNet18Backbone(pretrained.Options, result.Network, BackboneName), report);
    }

    /// <summary>One console line per finished epoch.</summary>
    public static string DescribeEpoch(FineTuneEpoch e, int epochs) => string.Create(CultureInfo.InvariantCulture,
        $"epoch {e.Epoch}/{epochs}{(e.Epoch == 0 ? " (head only)" : "")}: train loss {e.TrainLoss:F4} accuracy {e.TrainAccuracy:F4} | validation loss {e.ValidationLoss:F4} accuracy {e.ValidationAccuracy:F4} | lr {e.LearningRate:G3} | {e.ImagesPerSecond:F1} images/s | {e.Seconds:F0} s");

    /// <summary>
    /// The taps the head trained along with the backbone reads: those of <paramref name="backbone"/> at or above the
    /// cut (a tap below it would need its maps cached too), or the last stage when none is. The head of the saved model
    /// is fitted afterwards on all of <paramref name="backbone"/>'s taps of the fine-tuned network.
    /// </summary>
    public static BackboneOptions HeadTapsAboveCut(BackboneOptions backbone, int stages)
    {
        var lowest = 4 - stages;
        var kept = backbone.ParseTaps().Where(t => t.Stage >= lowest).ToList();
        return backbone with { Features = kept.Count > 0 ? string.Join('+', kept) : "s4" };
    }

    /// <summary>One checkpoint per output folder: <c>--resume</c> finds the run that wrote into the same folder.</summary>
    public static string CheckpointFolder(string workspace, string outputFolder)
    {
        var key = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(Path.GetFullPath(outputFolder))))[..16];
        return Path.Combine(workspace, "finetune", key);
    }

    /// <summary>Reports on the caller's thread, in order (<see cref="Progress{T}"/> posts to the thread pool).</summary>
    private sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
