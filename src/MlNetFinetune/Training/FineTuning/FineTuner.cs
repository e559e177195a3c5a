using System.Diagnostics;
using System.Security.Cryptography;
using MlNetFinetune.Backbones;
using Onnx;

namespace MlNetFinetune.Training.FineTuning;

/// <summary>
/// Fine-tunes the top stages of the ResNet18 backbone together with a new softmax head, on ONNX Runtime alone.
/// The frozen lower part runs once per image into an in-memory cache (PyTorch's usual recipe recomputes it every
/// step); each SGD step is one ONNX graph (forward, backward, update) over the cached maps, flipped and shifted for
/// augmentation; the validation images are scored after every epoch, and the epoch with the lowest validation loss
/// is the result. Deterministic on the CPU for a seed; checkpoints after every epoch let an interrupted run resume to
/// the same result.
/// </summary>
public sealed class FineTuner
{
    /// <summary><see cref="FineTuneResult.StopReason"/> of a run that trained all its epochs.</summary>
    public const string Completed = "completed";

    /// <summary><see cref="FineTuneResult.StopReason"/> of a run cancelled after at least one epoch.</summary>
    public const string Cancelled = "cancelled";

    /// <summary><see cref="FineTuneResult.BestEpoch"/> when no epoch had a finite validation loss.</summary>
    public const int NoEpoch = -1;


    private readonly FineTuneOptions _options;
    private readonly BackboneOptions _backbone;
    private readonly ModelProto? _network;

    /// <summary>Fine-tunes <paramref name="network"/> (null: the pretrained ResNet18) at <paramref name="backbone"/>'s
    /// image size, the head reading <paramref name="backbone"/>'s taps.</summary>
    public FineTuner(FineTuneOptions options, BackboneOptions backbone, ModelProto? network = null)
    {
        _options = options;
        _backbone = backbone;
        _network = network;
    }

    /// <summary>Keeps the cached maps as float32 instead of float16 (twice the memory; for the tests that compare with a float32 reference).</summary>
    internal bool FullPrecisionCache { get; init; }

    /// <summary>
    /// Flips by caching the map of each mirrored image as a second view (exact, twice the cache memory and frozen-part
    /// time) instead of mirroring the cached map. Off by default.
    /// </summary>
    public bool MirroredViews { get; init; }

    /// <summary>Writes an ONNX Runtime profile of the train-step session to a file starting with this prefix (for measuring); null writes none.</summary>
    public string? ProfilePrefix { get; init; }

    /// <summary>
    /// Runs the fine-tuning. <paramref name="training"/> and <paramref name="validation"/> are enumerated once each,
    /// in order (decode lazily: only the cached maps are kept). Throws <see cref="OperationCanceledException"/> when
    /// cancelled before the first epoch finished; later it returns the best epoch so far.
    /// </summary>
    /// <param name="training">The images trained on.</param>
    /// <param name="validation">The images each epoch is scored on (never trained on); none keeps the last epoch.</param>
    /// <param name="classCount">Number of classes; labels run from 0 to classCount - 1.</param>
    /// <param name="checkpointFolder">Receives a checkpoint after every epoch; null keeps none.</param>
    /// <param name="resume">Continue from the checkpoint in <paramref name="checkpointFolder"/> (which must exist and
    /// match the options and images) instead of starting over.</param>
    /// <param name="epochs">Told about every finished epoch.</param>
    /// <param name="progress">Told how caching, training and validation advance.</param>
    /// <param name="cancellation">Stops the run at the next step; see the summary for what it returns.</param>
    public FineTuneResult Run(
        IEnumerable<LabelledPixels> training,
        IEnumerable<LabelledPixels> validation,
        int classCount,
        string? checkpointFolder = null,
        bool resume = false,
        IProgress<FineTuneEpoch>? epochs = null,
        IProgress<FineTuneProgress>? progress = null,
        CancellationToken cancellation = default)
    {
        _options.Validate();
        _backbone.Validate();
        if (classCount < 2)
        {
            throw new UserInputException($"fine-tuning needs at least 2 classes, got {classCount}");
        }

        if (resume && checkpointFolder is null)
        {
            throw new UserInputException("--resume: no workspace to resume from");
        }

        var cut = BackboneCut.Create(_backbone, _options.Stages, _network);
        var checkpoint = resume ? FineTuneCheckpoint.Load(checkpointFolder!)
            ?? throw new UserInputException($"--resume: no fine-tuning checkpoint in {checkpointFolder}") : null;
        if (checkpoint is not null && checkpoint.Options != Describe())
        {
            throw new UserInputException($"--resume: the checkpoint in {checkpointFolder} was made with other options ({checkpoint.Options})");
        }

        var clock = Stopwatch.StartNew();
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(BitConverter.GetBytes(classCount));
        var flipViews = MirroredViews && _options.Augment != Augmentation.None ? 2 : 1;
        var train = FrozenPass.Run(cut, training, flipViews, FullPrecisionCache, classCount, hash, "caching", progress, cancellation);
        var valid = FrozenPass.Run(cut, validation, 1, FullPrecisionCache, classCount, hash, "caching validation", progress, cancellation);
        if (train.Count == 0)
        {
            throw new UserInputException("fine-tuning needs training images; none were given");
        }

        var data = Convert.ToHexStringLower(hash.GetHashAndReset());
        if (checkpoint is not null && checkpoint.Data != data)
        {
            throw new UserInputException($"--resume: the checkpoint in {checkpointFolder} was made with other images");
        }

        var cacheSeconds = clock.Elapsed.TotalSeconds;
        var initial = InitialWeights(cut, classCount);
        using var session = new TrainStepSession(cut.Network, cut.Taps, classCount, _options.Momentum, _options.WeightDecay,
            initial, halfPrecision: !FullPrecisionCache, ProfilePrefix);
        var (mean, scale) = HeadStandardisation.Measure(session, train);
        session.Standardise(mean, scale);
        if (checkpoint is not null)
        {
            session.Load(checkpoint.Weights, checkpoint.Momenta);
        }

        var history = new List<FineTuneEpoch>(checkpoint?.History ?? []);
        var bestEpoch = checkpoint?.BestEpoch ?? NoEpoch;
        var best = checkpoint?.BestWeights ?? initial;
        var stopReason = checkpoint?.StopReason;

        // Scores the epoch just trained, keeps the best weights, decides whether to go on, and checkpoints.
        void Finish(FineTuneEpoch report)
        {
            history.Add(report);
            if (valid.Count == 0 || (double.IsFinite(report.ValidationLoss)
                && (bestEpoch == NoEpoch || report.ValidationLoss < history.Single(h => h.Epoch == bestEpoch).ValidationLoss)))
            {
                bestEpoch = report.Epoch;
                best = session.Weights.ToDictionary(p => p.Key, p => (float[])p.Value.Clone(), StringComparer.Ordinal);
            }

            if (!double.IsFinite(report.TrainLoss))
            {
                stopReason = "diverged (the training loss is not finite; lower --learning-rate)";
            }
            else if (report.Epoch == _options.Epochs)
            {
                stopReason = Completed;
            }
            else if (_options.Patience > 0 && bestEpoch != NoEpoch && report.Epoch - bestEpoch >= _options.Patience)
            {
                stopReason = $"early stopping (no better validation loss for {_options.Patience} epochs)";
            }

            if (checkpointFolder is not null)
            {
                new FineTuneCheckpoint
                {
                    Options = Describe(),
                    Data = data,
                    History = history,
                    BestEpoch = bestEpoch,
                    StopReason = stopReason,
                    Weights = session.Weights,
                    Momenta = session.Momenta,
                    BestWeights = best,
                }.Save(checkpointFolder);
            }

            epochs?.Report(report);
        }

        if (checkpoint is null && _options.HeadEpochs > 0)
        {
            var clock0 = Stopwatch.StartNew();
            var probe = HeadProbe.Train(session, train, _options, classCount, mean, scale, progress, cancellation);
            cancellation.ThrowIfCancellationRequested();
            var (loss0, accuracy0) = EpochLoop.Validate(session, valid, 0, progress);
            Finish(new FineTuneEpoch(0, probe!.Value.Loss, probe.Value.Accuracy, loss0, accuracy0, _options.LearningRate * _options.HeadLearningRateMultiple,
                train.Count / clock0.Elapsed.TotalSeconds, clock0.Elapsed.TotalSeconds));
        }

        var loop = new EpochLoop(_options, session, train);
        while (stopReason is null)
        {
            var epoch = history.Count(h => h.Epoch > 0);
            var epochClock = Stopwatch.StartNew();
            var trained = loop.Train(epoch, progress, cancellation);
            if (trained is null)
            {
                if (history.Count == 0)
                {
                    cancellation.ThrowIfCancellationRequested();
                }

                stopReason = Cancelled;
                break;
            }

            var (validationLoss, accuracy) = EpochLoop.Validate(session, valid, epoch + 1, progress);
            Finish(new FineTuneEpoch(epoch + 1, trained.Value.Loss, trained.Value.Accuracy, validationLoss, accuracy, trained.Value.LearningRate,
                trained.Value.ImagesPerSecond, epochClock.Elapsed.TotalSeconds));
        }

        var head = HeadStandardisation.RawFeatureHead(_backbone.Features, best[TrainingGraphBuilder.HeadWeight], best[TrainingGraphBuilder.HeadBias], mean, scale, classCount);
        return new FineTuneResult(cut.Export(best), head, history, bestEpoch, stopReason, train.Bytes + valid.Bytes, cacheSeconds);
    }

    /// <summary>The options and everything else that shapes the result, as a checkpoint records them.</summary>
    private string Describe() =>
        $"{_options.Describe()};{_backbone.Describe()};mirroredViews={MirroredViews};fullPrecision={FullPrecisionCache}";

    /// <summary>
    /// The network's own weights for the trained stages, and a new head drawn as PyTorch draws a Linear layer's
    /// (uniform in ±1/sqrt(features)), seeded.
    /// </summary>
    private Dictionary<string, float[]> InitialWeights(BackboneCut cut, int classCount)
    {
        var weights = cut.Network.Initial.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);

        var features = cut.Taps.Sum(t => t.Size);
        var random = new Random(_options.Seed);
        var bound = 1 / MathF.Sqrt(features);
        weights[TrainingGraphBuilder.HeadWeight] = [.. Enumerable.Range(0, features * classCount).Select(_ => ((random.NextSingle() * 2) - 1) * bound)];
        weights[TrainingGraphBuilder.HeadBias] = [.. Enumerable.Range(0, classCount).Select(_ => ((random.NextSingle() * 2) - 1) * bound)];
        return weights;
    }
}
