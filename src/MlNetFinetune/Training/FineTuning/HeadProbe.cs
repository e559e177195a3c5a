using Onnx;

namespace MlNetFinetune.Training.FineTuning;

/// <summary>
/// Trains the new head alone before the backbone trains (linear probing, then fine-tuning): a random head's first
/// large gradients would otherwise flow into the pretrained stages. The trainable part's output is computed once per
/// training image (as cached, not augmented) and the head trains on those vectors in a graph of its own, so a head
/// epoch costs next to nothing beside that one forward pass.
/// </summary>
internal static class HeadProbe
{
    private const string Input = "head_probe_features";
    private const int Batch = 256;

    /// <summary>
    /// Trains the head of <paramref name="session"/> for <see cref="FineTuneOptions.HeadEpochs"/> epochs at the head's
    /// learning rate (same schedule shape) and writes it back, momenta cleared; returns the last epoch's training loss
    /// and accuracy, or null when cancelled.
    /// </summary>
    public static (double Loss, double Accuracy)? Train(TrainStepSession session, FeatureMapStore train, FineTuneOptions options, int classes,
        float[] mean, float[] scale, IProgress<FineTuneProgress>? progress, CancellationToken cancellation)
    {
        var shape = new MapShape(1, 1, mean.Length);
        var features = new FeatureMapStore(shape, views: 1, fullPrecision: true);
        var batch = train.NewBatch(Batch);
        var labels = new long[Batch];
        for (var start = 0; start < train.Count; start += Batch)
        {
            var count = Math.Min(Batch, train.Count - start);
            for (var i = 0; i < count; i++)
            {
                train.CopyMap(start + i, 0, batch, i);
            }

            var vectors = session.Evaluate(batch, labels, count).Features;
            for (var i = 0; i < count; i++)
            {
                features.Add<float>(vectors.AsSpan(i * shape.Size, shape.Size), train.Labels[start + i]);
            }
        }

        var network = TrainableNetwork.Extract(new GraphProto(), Input, shape, []);
        var weights = session.Weights;
        using var head = new TrainStepSession(network, [new HeadTap(Input, 1, shape)], classes, options.Momentum, options.WeightDecay,
            new Dictionary<string, float[]>(StringComparer.Ordinal)
            {
                [TrainingGraphBuilder.HeadWeight] = weights[TrainingGraphBuilder.HeadWeight],
                [TrainingGraphBuilder.HeadBias] = weights[TrainingGraphBuilder.HeadBias],
            },
            halfPrecision: false);
        head.Standardise(mean, scale);
        var headOptions = options with
        {
            Epochs = options.HeadEpochs,
            Augment = Augmentation.None,
            LearningRate = options.LearningRate * options.HeadLearningRateMultiple,
            HeadLearningRateMultiple = 1,
        };
        var loop = new EpochLoop(headOptions, head, features);
        (double Loss, double Accuracy)? last = null;
        for (var epoch = 0; epoch < options.HeadEpochs; epoch++)
        {
            if (loop.Train(epoch, progress, cancellation, "training head") is not { } trained)
            {
                return null;
            }

            last = (trained.Loss, trained.Accuracy);
        }

        var updated = session.Weights.ToDictionary(p => p.Key, p => (float[])p.Value.Clone(), StringComparer.Ordinal);
        updated[TrainingGraphBuilder.HeadWeight] = (float[])head.Weights[TrainingGraphBuilder.HeadWeight].Clone();
        updated[TrainingGraphBuilder.HeadBias] = (float[])head.Weights[TrainingGraphBuilder.HeadBias].Clone();
        session.Load(updated, momenta: null);
        return last;
    }
}
