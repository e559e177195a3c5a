using System.Diagnostics;

namespace MlNetFinetune.Training.FineTuning;

/// <summary>
/// One training epoch over the cached maps: a seeded shuffle, augmentation drawn from the same seeded stream, and
/// one train-step call per batch. Everything random in epoch e comes from a generator seeded by (seed, e), so epoch e
/// is the same whether the run got there in one go or resumed from a checkpoint.
/// </summary>
internal sealed class EpochLoop(FineTuneOptions options, TrainStepSession session, FeatureMapStore store)
{
    private const int EvaluationBatch = 256;

    private readonly Array _batch = store.NewBatch(options.BatchSize);
    private readonly long[] _labels = new long[options.BatchSize];

    /// <summary>Trains epoch <paramref name="epoch"/> (0-based); null when cancelled before it finished.</summary>
    public (double Loss, double Accuracy, float LearningRate, double ImagesPerSecond)? Train(int epoch, IProgress<FineTuneProgress>? progress, CancellationToken cancellation, string phase = "training")
    {
        var random = new Random(unchecked((options.Seed * 1_000_003) + epoch));
        var order = Enumerable.Range(0, store.Count).ToArray();
        random.Shuffle(order);
        var steps = (store.Count + options.BatchSize - 1) / options.BatchSize;
        var clock = Stopwatch.StartNew();
        double loss = 0;
        var correct = 0;
        var learningRate = 0f;
        for (var step = 0; step < steps; step++)
        {
            if (cancellation.IsCancellationRequested)
            {
                return null;
            }

            var start = step * options.BatchSize;
            var count = Math.Min(options.BatchSize, store.Count - start);
            for (var i = 0; i < count; i++)
            {
                var image = order[start + i];
                var flip = options.Augment != Augmentation.None && random.Next(2) == 1;
                var shiftY = options.Augment == Augmentation.FlipShift ? random.Next(-1, 2) : 0;
                var shiftX = options.Augment == Augmentation.FlipShift ? random.Next(-1, 2) : 0;
                if (store.Views == 2)
                {
                    store.CopyMap(image, flip ? 1 : 0, _batch, i, false, shiftY, shiftX);
                }
                else
                {
                    store.CopyMap(image, 0, _batch, i, flip, shiftY, shiftX);
                }

                _labels[i] = store.Labels[image];
            }

            learningRate = options.LearningRateAt(epoch, step, steps);
            loss += session.Step(_batch, _labels, count, learningRate, learningRate * options.HeadLearningRateMultiple) * count;
            correct += session.LastCorrect;
            progress?.Report(new FineTuneProgress(phase, epoch + 1, start + count, store.Count, (start + count) / clock.Elapsed.TotalSeconds));
        }

        return (loss / store.Count, (double)correct / store.Count, learningRate, store.Count / clock.Elapsed.TotalSeconds);
    }

    /// <summary>Mean loss and accuracy of the current weights on <paramref name="validation"/> (as cached, never augmented); NaN without images.</summary>
    public static (double Loss, double Accuracy) Validate(TrainStepSession session, FeatureMapStore validation, int epoch, IProgress<FineTuneProgress>? progress)
    {
        if (validation.Count == 0)
        {
            return (double.NaN, double.NaN);
        }

        var clock = Stopwatch.StartNew();
        var batch = validation.NewBatch(EvaluationBatch);
        var labels = new long[EvaluationBatch];
        double loss = 0;
        var correct = 0;
        for (var start = 0; start < validation.Count; start += EvaluationBatch)
        {
            var count = Math.Min(EvaluationBatch, validation.Count - start);
            for (var i = 0; i < count; i++)
            {
                validation.CopyMap(start + i, 0, batch, i);
                labels[i] = validation.Labels[start + i];
            }

            var (losses, logits, _) = session.Evaluate(batch, labels, count);
            var classes = logits.Length / count;
            for (var i = 0; i < count; i++)
            {
                loss += losses[i];
                var row = logits.AsSpan(i * classes, classes);
                if (row.IndexOf(row.ToArray().Max()) == labels[i])
                {
                    correct++;
                }
            }

            progress?.Report(new FineTuneProgress("validating", epoch, start + count, validation.Count, (start + count) / clock.Elapsed.TotalSeconds));
        }

        return (loss / validation.Count, (double)correct / validation.Count);
    }
}
