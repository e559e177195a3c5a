using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Trainers;
using MlNetFinetune.Evaluation;
using MlNetFinetune.Pipeline;

namespace MlNetFinetune.Training;

/// <summary>The fitted head and how it was chosen.</summary>
/// <param name="Name">"softmax", "sdca" or "lightgbm".</param>
/// <param name="Transformer">The fitted head (normalizer and classifier).</param>
/// <param name="L2Regularization">The L2 strength chosen.</param>
/// <param name="Epochs">The epochs it was trained for.</param>
/// <param name="Candidates">Every setting tried, with its validation scores.</param>
internal sealed record TrainedHead(string Name, ITransformer Transformer, float L2Regularization, int Epochs, IReadOnlyList<HeadCandidate> Candidates);

/// <summary>One finished epoch of an early-stopped softmax head, as a progress callback sees it.</summary>
/// <param name="L2Regularization">The L2 strength being trained.</param>
/// <param name="Epoch">The epoch just finished, from 1.</param>
/// <param name="Validation">The epoch's scores on the validation rows.</param>
/// <param name="Head">The head after this epoch (normalizer and classifier), to score other rows with.</param>
public sealed record HeadEpoch(float L2Regularization, int Epoch, MulticlassClassificationMetrics Validation, ITransformer Head);

/// <summary>
/// Fits the classifier head on cached bottleneck features. L-BFGS runs in epochs of a few iterations, each continuing
/// from the last one's weights; after each epoch the head is scored on the validation split (never the held-out set),
/// training stops when the validation log-loss stops falling, and the best epoch's weights are kept, not the last's.
/// When the L2 strength is not given, every candidate is trained that way and the best on validation wins; the head
/// is then refitted on train + validation for the winner's number of epochs (or, when the search ran on a sample of a
/// large training set, the winner is trained on all training rows with the same early stopping). The "auto" search
/// adds ML.NET's SDCA maximum entropy and LightGBM (early-stopped on the validation split) within a time budget.
/// </summary>
internal static class HeadTrainer
{
    public const string SoftmaxHead = "softmax";
    public const string SdcaHead = "sdca";
    public const string LightGbmHead = "lightgbm";

    /// <summary>Searches, trains and returns the head (see the class summary).</summary>
    /// <param name="ml">The context the head is made in.</param>
    /// <param name="labelToKey">Maps the rows' class names to the keys the head predicts.</param>
    /// <param name="train">Training rows.</param>
    /// <param name="validation">Validation rows; none trains one head with a fixed L2 strength for all iterations.</param>
    /// <param name="featureSize">Length of the feature vectors.</param>
    /// <param name="options">How the head is searched and trained.</param>
    /// <param name="cancellation">Stops the search between epochs.</param>
    /// <param name="onEpoch">Hears of every epoch of every early-stopped softmax run, with its validation scores.</param>
    /// <param name="refitOnValidation">True (the Trainer's split) refits the winner on train + validation; false keeps
    /// the validation rows out of training, for validation rows the caller brought (the ML.NET estimator's validation set).</param>
    public static TrainedHead Fit(
        MLContext ml,
        ITransformer labelToKey,
        IReadOnlyList<FeatureRow> train,
        IReadOnlyList<FeatureRow> validation,
        int featureSize,
        HeadOptions options,
        CancellationToken cancellation = default,
        Action<HeadEpoch>? onEpoch = null,
        bool refitOnValidation = true)
    {
        var maxEpochs = Math.Max(1, options.MaximumIterations / Math.Max(1, options.EpochIterations));
        if (validation.Count == 0)
        {
            var l2Only = options.L2Regularization ?? HeadOptions.L2Candidates[1];
            var fitted = ImageClassificationChain.Head(ml, l2Only, options.MaximumIterations)
                .Fit(labelToKey.Transform(FeatureRow.ToDataView(ml, train, featureSize)));
            return new TrainedHead(SoftmaxHead, fitted, l2Only, maxEpochs, []);
        }

        // On large sets the L2 search fits on a per-class sample: the ranking of strengths is stable at 10,000 rows,
        // and it keeps the search from costing several full fits.
        var sampled = train.Count > options.SearchSampleSize;
        var searchRows = sampled ? SamplePerClass(train, options.SearchSampleSize) : train;
        var searchView = labelToKey.Transform(FeatureRow.ToDataView(ml, searchRows, featureSize));
        var validationView = labelToKey.Transform(FeatureRow.ToDataView(ml, validation, featureSize));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var budget = options.SearchBudget ?? TimeSpan.FromMinutes(10);
        var candidates = new List<HeadCandidate>();
        var softmaxRuns = new Dictionary<float, EarlyStoppingRun>();
        foreach (var l2 in options.L2Regularization is float given ? [given] : HeadOptions.L2Candidates)
        {
            var run = TrainWithEarlyStopping(ml, searchView, validationView, l2, options, maxEpochs, cancellation, onEpoch);
            softmaxRuns[l2] = run;
            candidates.Add(new HeadCandidate(SoftmaxHead, l2, run.BestAccuracy, run.BestLogLoss, run.BestEpoch, run.EpochsRun));
        }

        if (options.Search == HeadOptions.AutoSearch)
        {
            foreach (var name in new[] { SdcaHead, LightGbmHead })
            {
                cancellation.ThrowIfCancellationRequested();
                if (clock.Elapsed > budget)
                {
                    candidates.Add(new HeadCandidate(name + " (not run: search budget spent)", 0, 0, 0, 0, 0));
                    continue;
                }

                var head = FitAlternative(ml, name, searchView, validationView);
                var metrics = ml.MulticlassClassification.Evaluate(head.Transform(validationView), labelColumnName: ColumnNames.LabelKey);
                candidates.Add(new HeadCandidate(name, 0, metrics.MicroAccuracy, metrics.LogLoss, 1, 1));
            }
        }

        var best = candidates.Where(c => c.EpochsRun > 0)
            .OrderByDescending(c => c.ValidationAccuracy).ThenBy(c => c.ValidationLogLoss).First();
        if (best.Head != SoftmaxHead)
        {
            var trainOn = sampled || !refitOnValidation ? FeatureRow.ToDataView(ml, train, featureSize) : FeatureRow.ToDataView(ml, train.Concat(validation), featureSize);
            return new TrainedHead(best.Head, FitAlternative(ml, best.Head, labelToKey.Transform(trainOn), validationView), 0, 1, candidates);
        }

        if (sampled)
        {
            var trainView = labelToKey.Transform(FeatureRow.ToDataView(ml, train, featureSize));
            var full = TrainWithEarlyStopping(ml, trainView, validationView, best.L2Regularization, options, maxEpochs, cancellation, onEpoch);
            var winner = new HeadCandidate(SoftmaxHead + " (all training rows)", best.L2Regularization, full.BestAccuracy, full.BestLogLoss, full.BestEpoch, full.EpochsRun);
            return new TrainedHead(SoftmaxHead, full.Best, best.L2Regularization, full.BestEpoch, [.. candidates, winner]);
        }

        // Validation rows the caller brought (not split off the training rows) stay out of training, as in ML.NET's
        // ImageClassificationTrainer: the best epoch of the search is the head.
        if (!refitOnValidation)
        {
            return new TrainedHead(SoftmaxHead, softmaxRuns[best.L2Regularization].Best, best.L2Regularization, best.BestEpoch, candidates);
        }

        var all = labelToKey.Transform(FeatureRow.ToDataView(ml, train.Concat(validation), featureSize));
        var final = TrainEpochs(ml, all, best.L2Regularization, options, best.BestEpoch, cancellation);
        return new TrainedHead(SoftmaxHead, final, best.L2Regularization, best.BestEpoch, candidates);
    }

    private static ITransformer FitAlternative(MLContext ml, string name, IDataView train, IDataView validation) => name switch
    {
        SdcaHead => ImageClassificationChain.SdcaHead(ml).Fit(train),
        LightGbmHead => ImageClassificationChain.LightGbmHead(ml).Fit(train, validation),
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, "unknown head"),
    };

    /// <summary>About <paramref name="size"/> rows keeping each class's share, taken at even strides (deterministic).</summary>
    private static List<FeatureRow> SamplePerClass(IReadOnlyList<FeatureRow> rows, int size)
    {
        var fraction = (double)size / rows.Count;
        var sample = new List<FeatureRow>();
        foreach (var group in rows.GroupBy(r => r.Label))
        {
            var members = group.ToList();
            var take = Math.Max(1, (int)Math.Round(members.Count * fraction));
            for (var i = 0; i < take; i++)
            {
                sample.Add(members[(int)((long)i * members.Count / take)]);
            }
        }

        return sample;
    }

    /// <summary>Scores of <paramref name="head"/> on labelled features, in key order.</summary>
    public static IReadOnlyList<float[]> PredictScores(MLContext ml, ITransformer labelToKey, ITransformer head, IReadOnlyList<FeatureRow> rows, int featureSize)
    {
        var scored = head.Transform(labelToKey.Transform(FeatureRow.ToDataView(ml, rows, featureSize)));
        return [.. ml.Data.CreateEnumerable<ScoreRow>(scored, reuseRowObject: false).Select(r => r.Score)];
    }

    /// <summary>What an early-stopped run kept: the best epoch's head and its validation scores, and every epoch's log-loss.</summary>
    public sealed record EarlyStoppingRun(ITransformer Best, int BestEpoch, double BestAccuracy, double BestLogLoss, int EpochsRun, IReadOnlyList<double> ValidationLogLoss);

    /// <summary>
    /// Trains in epochs, scoring each on <paramref name="validation"/>, and keeps the epoch of lowest validation log-loss;
    /// <paramref name="onEpoch"/> hears of every epoch.
    /// </summary>
    public static EarlyStoppingRun TrainWithEarlyStopping(MLContext ml, IDataView train, IDataView validation, float l2, HeadOptions options, int maxEpochs,
        CancellationToken cancellation = default, Action<HeadEpoch>? onEpoch = null)
    {
        var normalizer = ImageClassificationChain.HeadNormalizer(ml).Fit(train);
        var normalized = normalizer.Transform(train);
        var trainer = ImageClassificationChain.HeadClassifier(ml, l2, options.EpochIterations);
        MulticlassPredictionTransformer<MaximumEntropyModelParameters>? current = null;
        ITransformer? best = null;
        int bestEpoch = 0, epoch = 0;
        double bestLogLoss = double.PositiveInfinity, bestAccuracy = 0;
        var history = new List<double>();
        while (epoch < maxEpochs && epoch - bestEpoch <= options.Patience)
        {
            cancellation.ThrowIfCancellationRequested();
            epoch++;
            current = current is null ? trainer.Fit(normalized) : trainer.Fit(normalized, current.Model);
            var head = new TransformerChain<ITransformer>(normalizer, current);
            var metrics = ml.MulticlassClassification.Evaluate(head.Transform(validation), labelColumnName: ColumnNames.LabelKey);
            history.Add(metrics.LogLoss);
            onEpoch?.Invoke(new HeadEpoch(l2, epoch, metrics, head));
            if (metrics.LogLoss < bestLogLoss)
            {
                (best, bestEpoch, bestLogLoss, bestAccuracy) = (head, epoch, metrics.LogLoss, metrics.MicroAccuracy);
            }
        }

        return new EarlyStoppingRun(best!, bestEpoch, bestAccuracy, bestLogLoss, epoch, history);
    }

    private static ITransformer TrainEpochs(MLContext ml, IDataView train, float l2, HeadOptions options, int epochs, CancellationToken cancellation)
    {
        var normalizer = ImageClassificationChain.HeadNormalizer(ml).Fit(train);
        var normalized = normalizer.Transform(train);
        var trainer = ImageClassificationChain.HeadClassifier(ml, l2, options.EpochIterations);
        var current = trainer.Fit(normalized);
        for (var epoch = 2; epoch <= epochs; epoch++)
        {
            cancellation.ThrowIfCancellationRequested();
            current = trainer.Fit(normalized, current.Model);
        }

        return new TransformerChain<ITransformer>(normalizer, current);
    }

    private sealed class ScoreRow
    {
        [ColumnName(ColumnNames.Score)]
        public float[] Score { get; set; } = [];
    }
}
