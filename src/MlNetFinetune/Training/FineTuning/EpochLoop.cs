using System.Diagnostics;

namespace MlNetFinetune.Training.FineTuning;

/// <summary>
/// One training epoch over the cached maps: a seeded shuffle, augmentation drawn from the same seeded stream, and
/// one train-step call per batch. Everything random in epoch e comes from a generator seeded by (seed, e), so epoch e
/// is the same whether the run got there in one go or resumed from a checkpoint.
/// </summary>
internal sealed class EpochLoop(FineTuneOptions options, TrainStepSession session, FeatureMapStore store)
{
    private readonly Array _batch = store.NewBatch(options.BatchSize);
    private readonly long[] _labels = new long[options.BatchSize];

    /// <summary>Trains epoch <paramref name="epoch"/> (0-based); null when cancelled before it finished.</summary>
    public (double Loss, float LearningRate, double ImagesPerSecond)? Train(int epoch, IProgress<FineTuneProgress>? progress, CancellationToken cancellation)
    {
        var random = new Random(unchecked((options.Seed * 1_000_003) + epoch));
        var order = Enumerable.Range(0, store.Count).ToArray();
        random.Shuffle(order);
        var steps = (store.Count + options.BatchSize - 1) / options.BatchSize;
        var clock = Stopwatch.StartNew();
        double loss = 0;
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
            progress?.Report(new FineTuneProgress("training", epoch + 1, start + count, store.Count, (start + count) / clock.Elapsed.TotalSeconds));
        }

        return (loss / store.Count, learningRate, store.Count / clock.Elapsed.TotalSeconds);
    }
}
