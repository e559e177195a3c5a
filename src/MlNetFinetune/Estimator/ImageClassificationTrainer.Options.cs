using System.Globalization;
using Microsoft.ML;
using MlNetFinetune.Backbones;

namespace MlNetFinetune;

public sealed partial class ImageClassificationTrainer
{
    /// <summary>Which heads the search tries on the validation rows.</summary>
    public enum HeadSearch
    {
        /// <summary>The softmax head (multinomial logistic regression) at each L2 strength of 1, 10, 100 and 1000.</summary>
        Softmax,

        /// <summary>Also ML.NET's SDCA maximum entropy and LightGBM heads, within <see cref="Options.SearchBudget"/>.</summary>
        Auto,
    }

    /// <summary>
    /// Stops training a head once its validation log-loss has not fallen for <see cref="Patience"/> epochs; the best
    /// epoch's weights are kept, not the last's. The monitored quantity is always the validation log-loss (accuracy on
    /// a small validation split moves in coarse steps).
    /// </summary>
    public sealed class EarlyStopping
    {
        /// <summary>Stops after <paramref name="patience"/> epochs without a lower validation log-loss.</summary>
        /// <param name="patience">Epochs to wait; 0 stops at the first epoch that does not improve. Default 2.</param>
        public EarlyStopping(int patience = 2)
        {
            Patience = patience;
        }

        /// <summary>Epochs without a lower validation log-loss before training stops.</summary>
        public int Patience { get; }
    }

    /// <summary>
    /// Options of <see cref="ImageClassificationTrainer"/>. The members named like those of ML.NET's
    /// <c>Microsoft.ML.Vision.ImageClassificationTrainer.Options</c> mean the same where the meaning carries over; the
    /// README's table maps each of them. Every member has a default that works.
    /// </summary>
    public sealed record Options
    {
        /// <summary>The label column: an ML.NET key (e.g. from <c>MapValueToKey</c>). Default "Label".</summary>
        public string LabelColumnName { get; init; } = "Label";

        /// <summary>
        /// The image column: encoded bytes (a byte vector, as <c>LoadRawImageBytes</c> makes; PNG, JPEG, BMP, GIF or
        /// WebP) or a decoded image (<c>MLImage</c>, as <c>LoadImages</c> makes). Default "Features".
        /// </summary>
        public string FeatureColumnName { get; init; } = "Features";

        /// <summary>Output column of the class probabilities, in key order. Default "Score".</summary>
        public string ScoreColumnName { get; init; } = "Score";

        /// <summary>Output column of the predicted class, a key of the label's key type. Default "PredictedLabel".</summary>
        public string PredictedLabelColumnName { get; init; } = "PredictedLabel";

        /// <summary>
        /// Rows that choose the head and stop its training; they are never trained on. Null splits
        /// <see cref="ValidationSetFraction"/> off the training rows instead.
        /// </summary>
        public IDataView? ValidationSet { get; init; }

        /// <summary>
        /// Share of each class of the training rows used for validation when <see cref="ValidationSet"/> is null (after
        /// the search the head is refitted on all training rows). Null: no validation; the head then trains with L2
        /// strength 10 (or <see cref="L2Regularization"/>) for all epochs. Default 0.1.
        /// </summary>
        public float? ValidationSetFraction { get; init; } = 0.1f;

        /// <summary>Most epochs of head training; one epoch is 20 L-BFGS iterations over all training rows. Default 20.</summary>
        public int Epoch { get; init; } = 20;

        /// <summary>When a head stops training; null trains every epoch (and still keeps the best). Default: patience 2.</summary>
        public EarlyStopping? EarlyStoppingCriteria { get; init; } = new();

        /// <summary>
        /// Called as the backbone runs over the images (<see cref="ImageClassificationMetrics.Bottleneck"/>, about once
        /// per batch) and after each head epoch with validation rows (<see cref="ImageClassificationMetrics.Train"/>).
        /// </summary>
        public Action<ImageClassificationMetrics>? MetricsCallback { get; init; }

        /// <summary>Also reports each head epoch's accuracy and log-loss on the training rows to <see cref="MetricsCallback"/>. Default true.</summary>
        public bool TestOnTrainSet { get; init; } = true;

        /// <summary>
        /// Folder of the bottleneck cache, shared with the command-line Trainer: features are kept per image content and
        /// backbone, so a second fit on the same images does not run the backbone again. Null: $XDG_CACHE_HOME/mlnetfinetune,
        /// else ~/.cache/mlnetfinetune.
        /// </summary>
        public string? WorkspacePath { get; init; }

        /// <summary>Images per backbone call while featurizing. Default 16.</summary>
        public int BatchSize { get; init; } = 16;

        /// <summary>Backbone input side in pixels, a multiple of 32 from 32 to 512; null chooses it from the images (as the Trainer does).</summary>
        public int? ImageSize { get; init; }

        /// <summary>Pooled backbone layers, e.g. "s4" or "s2g2+s3g2+s4" (see the README); null chooses them from the images.</summary>
        public string? Features { get; init; }

        /// <summary>L2 strength of the softmax head; null chooses it on the validation rows.</summary>
        public float? L2Regularization { get; init; }

        /// <summary>Which heads the search tries. Default <see cref="HeadSearch.Softmax"/>.</summary>
        public HeadSearch Search { get; init; } = HeadSearch.Softmax;

        /// <summary>Wall time for the search's extra heads; those not started by then are skipped. Null: 10 minutes.</summary>
        public TimeSpan? SearchBudget { get; init; }

        /// <summary>
        /// The backbone's number format. <see cref="Backbones.Precision.Int8"/> quantizes it with activation ranges
        /// calibrated on 256 of the training images (the same share of each class), for the CPU only; the fitted model
        /// then runs the int8 graph wherever it is loaded. Default <see cref="Backbones.Precision.Fp32"/>.
        /// </summary>
        public Precision Precision { get; init; } = Precision.Fp32;

        /// <summary>CUDA device for featurizing (needs the GPU build of ONNX Runtime); null runs on the CPU.</summary>
        public int? GpuDeviceId { get; init; }

        /// <summary>Seeds the validation split and ML.NET's trainers; the same seed and data give the same model. Default 1.</summary>
        public int Seed { get; init; } = 1;

        /// <summary>Receives one line per step: the backbone chosen, the cache, images skipped and why, the head chosen.</summary>
        public Action<string>? Log { get; init; }

        // Fine-tuning the backbone's last stages (learning rate, schedule, augmentation) joins these options with the
        // fine-tuning work; until then the backbone is frozen and only the head is trained.

        /// <summary>Throws <see cref="UserInputException"/> naming the option when a value cannot work.</summary>
        public void Validate()
        {
            foreach (var (name, value) in new[]
            {
                (nameof(LabelColumnName), LabelColumnName), (nameof(FeatureColumnName), FeatureColumnName),
                (nameof(ScoreColumnName), ScoreColumnName), (nameof(PredictedLabelColumnName), PredictedLabelColumnName),
            })
            {
                if (string.IsNullOrWhiteSpace(value))
                {
                    throw new UserInputException($"{name}: give a column name");
                }
            }

            if (ScoreColumnName == PredictedLabelColumnName || ScoreColumnName == FeatureColumnName || PredictedLabelColumnName == FeatureColumnName
                || ScoreColumnName == LabelColumnName || PredictedLabelColumnName == LabelColumnName)
            {
                throw new UserInputException(
                    $"{nameof(ScoreColumnName)} '{ScoreColumnName}' and {nameof(PredictedLabelColumnName)} '{PredictedLabelColumnName}': must differ from each other and from the label and feature columns");
            }

            if (ValidationSetFraction is float fraction && !(fraction is > 0 and < 1))
            {
                throw new UserInputException(Invariant($"{nameof(ValidationSetFraction)} {fraction}: must be between 0 and 1 (exclusive), or null for no validation"));
            }

            if (Epoch < 1)
            {
                throw new UserInputException(Invariant($"{nameof(Epoch)} {Epoch}: must be at least 1"));
            }

            if (EarlyStoppingCriteria is { Patience: < 0 } stopping)
            {
                throw new UserInputException(Invariant($"{nameof(EarlyStoppingCriteria)}.{nameof(EarlyStopping.Patience)} {stopping.Patience}: must be 0 or more"));
            }

            if (BatchSize is < 1 or > 4096)
            {
                throw new UserInputException(Invariant($"{nameof(BatchSize)} {BatchSize}: must be between 1 and 4096"));
            }

            if (ImageSize is int size)
            {
                new BackboneOptions(size, Features ?? "s4").Validate();
            }
            else if (Features is string features)
            {
                new BackboneOptions(BackboneOptions.MaximumImageSize, features).ParseTaps();
            }

            if (L2Regularization is float l2 && !(l2 >= 0 && float.IsFinite(l2)))
            {
                throw new UserInputException(Invariant($"{nameof(L2Regularization)} {l2}: must be a finite number of 0 or more"));
            }

            if (SearchBudget is TimeSpan budget && budget <= TimeSpan.Zero)
            {
                throw new UserInputException(Invariant($"{nameof(SearchBudget)} {budget}: must be more than zero"));
            }

            if (GpuDeviceId is < 0)
            {
                throw new UserInputException(Invariant($"{nameof(GpuDeviceId)} {GpuDeviceId}: a device number is 0 or more"));
            }

            if (!Enum.IsDefined(Precision))
            {
                throw new UserInputException($"{nameof(Precision)} {Precision}: use {Precision.Fp32} or {Precision.Int8}");
            }

            if (Precision == Precision.Int8 && GpuDeviceId is not null)
            {
                throw new UserInputException($"{nameof(Precision)} {Precision.Int8} runs on the CPU only; use {Precision.Fp32} with {nameof(GpuDeviceId)}");
            }

            if (!Enum.IsDefined(Search))
            {
                throw new UserInputException($"{nameof(Search)} {Search}: use {HeadSearch.Softmax} or {HeadSearch.Auto}");
            }
        }

        /// <summary>Epoch length in L-BFGS iterations, as the Trainer's head uses it.</summary>
        internal const int EpochIterations = 20;

        /// <summary>The head options these options stand for.</summary>
        internal Pipeline.HeadOptions ToHeadOptions() => new(
            L2Regularization,
            MaximumIterations: Epoch * EpochIterations,
            EpochIterations: EpochIterations,
            Patience: EarlyStoppingCriteria?.Patience ?? Epoch,
            Search: Search == HeadSearch.Auto ? Pipeline.HeadOptions.AutoSearch : Pipeline.HeadOptions.SoftmaxSearch,
            SearchBudget: SearchBudget);

        private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
    }
}
