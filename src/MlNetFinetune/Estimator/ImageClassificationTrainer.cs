using System.Diagnostics;
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
using MlNetFinetune.Backbones;
using MlNetFinetune.Backbones.Quantization;
using MlNetFinetune.Data;
using MlNetFinetune.Estimator;
using MlNetFinetune.Images;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Training;

namespace MlNetFinetune;

/// <summary>
/// Transfer learning for image classification as an ML.NET estimator, in place of ML.NET's
/// <c>Microsoft.ML.Vision.ImageClassificationTrainer</c>: the pretrained ResNet18 (ONNX Runtime) featurizes every image
/// once into the bottleneck cache, and a new classifier head is trained on the features with the same head search and
/// early stopping as the command-line Trainer. Create it with
/// <see cref="ImageClassificationCatalog.ImageClassification(MulticlassClassificationCatalog.MulticlassClassificationTrainers, string, string, string, string, IDataView?)"/>.
/// </summary>
/// <remarks>
/// Input: a label column of an ML.NET key type and an image column of encoded bytes (<c>LoadRawImageBytes</c>) or
/// decoded images (<c>LoadImages</c>). Output: <c>Score</c> (class probabilities in key order) and <c>PredictedLabel</c>
/// (a key of the label's type; map it back with <c>MapKeyToValue</c>). The fitted chain holds the backbone graph and
/// survives <c>Model.Save</c> and <c>Model.Load</c> in a process that references only this package; predicting needs
/// the image column only.
/// </remarks>
public sealed partial class ImageClassificationTrainer : IEstimator<TransformerChain<ITransformer>>
{
    /// <summary>Rows featurized per call, so that no more than this many encoded images are held in memory at once.</summary>
    private const int ChunkSize = 2048;

    private readonly Options _options;

    internal ImageClassificationTrainer(Options options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
    }

    /// <summary>
    /// Featurizes the images of <paramref name="input"/> (and of the validation set), trains the head and returns the
    /// whole model: [decode,] resize, pixels, backbone, head, named outputs. Rows with a missing label are left out;
    /// images that cannot be decoded are skipped (see <see cref="Options.Log"/>).
    /// </summary>
    /// <exception cref="UserInputException">An option cannot work, or a class has no usable training image.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A column is missing or of the wrong type.</exception>
    public TransformerChain<ITransformer> Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        _options.Validate();
        var log = _options.Log ?? (_ => { });
        var columns = LabelledImageColumns.Find(input.Schema, _options.LabelColumnName, _options.FeatureColumnName, "training data");
        var layout = new ChainLayout(_options.FeatureColumnName, columns.Encoded, _options.ScoreColumnName, _options.PredictedLabelColumnName, PredictedLabelAsKey: true);
        CheckWorkingColumns(input.Schema, layout);
        var validationColumns = _options.ValidationSet is { } validationSet ? ValidationColumns(validationSet.Schema, columns) : null;

        var ml = new MLContext(_options.Seed);
        var labelled = columns.ReadLabels(input);
        var (train, validation) = _options.ValidationSet is { } given
            ? (labelled, validationColumns!.ReadLabels(given))
            : _options.ValidationSetFraction is float fraction ? SplitOff(labelled, fraction) : (labelled, []);
        log(string.Create(CultureInfo.InvariantCulture,
            $"{labelled.Count} labelled images in {columns.ClassNames.Count} classes: {train.Count} train, {validation.Count} validation{(_options.ValidationSet is null ? "" : " (the validation set)")}"));

        var workspace = _options.WorkspacePath ?? TrainingOptions.DefaultWorkspace;
        var backbone = ResolveBackbone(input, columns, labelled, log);

        // Black, not the Trainer's white: an image column the user decoded with ML.NET's LoadImages reaches the saved
        // chain with its transparent pixels already black, and bytes columns are decoded the same way so that a model
        // reads both kinds alike.
        var featurization = new FeaturizationOptions(_options.BatchSize, GpuDevice: _options.GpuDeviceId, Alpha: ImageDecoder.DefaultAlpha);
        if (_options.Precision == Precision.Int8)
        {
            backbone = Int8Backbone.Calibrate(backbone, CalibrationImages(input, columns, train), new QuantizationOptions(), workspace, featurization, log);
        }

        using var store = FeatureStore.Open(ml, workspace, backbone, featurization);
        log(string.Create(CultureInfo.InvariantCulture, $"Bottleneck cache {store.Directory}: {store.LoadedCount} feature vectors on disk"));

        var clock = Stopwatch.StartNew();
        IReadOnlyList<FeaturizedImage> trainImages, validationImages;
        if (_options.ValidationSet is { } validationData)
        {
            trainImages = Featurize(store, input, columns, train, "row", ImageClassificationMetrics.Dataset.Train, log);
            validationImages = Featurize(store, validationData, validationColumns!, validation, "validation row", ImageClassificationMetrics.Dataset.Validation, log);
        }
        else
        {
            // Both parts come from the training data: one pass over it, then each row to its part.
            var all = Featurize(store, input, columns, labelled, "row", ImageClassificationMetrics.Dataset.Train, log);
            var validationRows = validation.Select(r => r.Row).ToHashSet();
            trainImages = [.. labelled.Zip(all).Where(p => !validationRows.Contains(p.First.Row)).Select(p => p.Second)];
            validationImages = [.. labelled.Zip(all).Where(p => validationRows.Contains(p.First.Row)).Select(p => p.Second)];
        }

        log(string.Create(CultureInfo.InvariantCulture, $"Featurized {trainImages.Count + validationImages.Count} images in {clock.Elapsed.TotalSeconds:F1} s"));
        var (usableTrain, usableValidation) = UsableParts(trainImages, validationImages, log);
        var trainRows = usableTrain.Select(i => new FeatureRow { Label = i.Image.Label, Features = i.Features! }).ToList();
        var validationFeatureRows = usableValidation.Select(i => new FeatureRow { Label = i.Image.Label, Features = i.Features! }).ToList();

        var labelToKey = ImageClassificationChain.LabelToKey(ml, columns.ClassNames).Fit(FeatureRow.ToDataView(ml, trainRows, backbone.FeatureSize));
        clock.Restart();
        var head = HeadTrainer.Fit(ml, labelToKey, trainRows, validationFeatureRows, backbone.FeatureSize, _options.ToHeadOptions(),
            onEpoch: EpochReporter(ml, labelToKey, trainRows, backbone.FeatureSize),
            refitOnValidation: _options.ValidationSet is null);
        log(string.Create(CultureInfo.InvariantCulture,
            $"Head fitted in {clock.Elapsed.TotalSeconds:F1} s: {head.Name}, L2 = {head.L2Regularization}, {head.Epochs} epoch(s)"));

        var graph = ModelFile.ChainGraph(backbone, workspace);
        return ImageClassificationChain.Compose(ml, head.Transformer, graph, backbone.ImageSize, layout, input);
    }

    /// <summary>
    /// The input columns and <see cref="Options.ScoreColumnName"/> (class probabilities) and
    /// <see cref="Options.PredictedLabelColumnName"/> (a key of the label's type).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The label or image column is missing or of the wrong type.</exception>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        var label = inputSchema.FirstOrDefault(c => c.Name == _options.LabelColumnName);
        if (label.Name is null || !label.IsKey || label.Kind != SchemaShape.Column.VectorKind.Scalar)
        {
            throw new ArgumentOutOfRangeException(nameof(inputSchema),
                $"label column '{_options.LabelColumnName}': expected a key (map class names to keys with MapValueToKey), got {(label.Name is null ? "no such column" : label.ItemType.ToString())}");
        }

        var image = inputSchema.FirstOrDefault(c => c.Name == _options.FeatureColumnName);
        if (image.Name is null || !(image.ItemType == NumberDataViewType.Byte && image.Kind != SchemaShape.Column.VectorKind.Scalar
            || image.ItemType is ImageDataViewType))
        {
            throw new ArgumentOutOfRangeException(nameof(inputSchema),
                $"image column '{_options.FeatureColumnName}': expected encoded image bytes (LoadRawImageBytes) or an image (LoadImages), got {(image.Name is null ? "no such column" : image.ItemType.ToString())}");
        }

        // SchemaShape columns cannot be made outside ML.NET; these two estimators make the shapes the trainer outputs:
        // a float vector with one slot per key value (named by the key values), and a key of the label's type.
        var ml = new MLContext();
        return ml.Transforms.Conversion.MapKeyToVector(_options.ScoreColumnName, _options.LabelColumnName)
            .Append(ml.Transforms.CopyColumns(_options.PredictedLabelColumnName, _options.LabelColumnName))
            .GetOutputSchema(inputSchema);
    }

    /// <summary>A seeded stratified share of each class of <paramref name="rows"/> for validation, and the rest.</summary>
    private (IReadOnlyList<LabelledRow> Train, IReadOnlyList<LabelledRow> Validation) SplitOff(IReadOnlyList<LabelledRow> rows, float fraction)
    {
        var records = rows.Select(r => new ImageRecord(RowName("row", r.Row), r.Label)).ToList();
        var (_, part) = StratifiedSplit.Split(records, fraction, _options.Seed + 1);
        var validation = part.Select(r => r.Path).ToHashSet(StringComparer.Ordinal);
        return ([.. rows.Where((_, i) => !validation.Contains(records[i].Path))], [.. rows.Where((_, i) => validation.Contains(records[i].Path))]);
    }

    /// <summary>How a row is named in messages, e.g. "row 17" or "validation row 3" (row numbers from 0).</summary>
    private static string RowName(string prefix, long row) => string.Create(CultureInfo.InvariantCulture, $"{prefix} {row}");

    private static LabelledImageColumns ValidationColumns(DataViewSchema schema, LabelledImageColumns training)
    {
        var validation = LabelledImageColumns.Find(schema, training.Label.Name, training.Image.Name, "validation set");
        if (!validation.ClassNames.SequenceEqual(training.ClassNames, StringComparer.Ordinal))
        {
            throw new ArgumentOutOfRangeException(nameof(schema),
                $"validation set: label column '{training.Label.Name}' has other classes than the training data ({string.Join(", ", validation.ClassNames)}); map both with one fitted MapValueToKey");
        }

        return validation;
    }

    private static void CheckWorkingColumns(DataViewSchema schema, ChainLayout layout)
    {
        foreach (var name in layout.WorkingColumns.Where(n => n != layout.ImageColumn))
        {
            if (schema.GetColumnOrNull(name) is not null)
            {
                throw new ArgumentOutOfRangeException(nameof(schema),
                    $"training data: column '{name}': the trainer uses this name for a working column and removes it from its output; rename the column");
            }
        }
    }

    private IBackbone ResolveBackbone(IDataView input, LabelledImageColumns columns, IReadOnlyList<LabelledRow> labelled, Action<string> log)
    {
        if (_options.ImageSize is int size && _options.Features is string features)
        {
            return new ResNet18Backbone(new BackboneOptions(size, features));
        }

        var step = Math.Max(1, labelled.Count / DataProfile.SampleSize);
        var sampled = Enumerable.Range(0, Math.Min(DataProfile.SampleSize, labelled.Count)).Select(i => labelled[i * step]).ToDictionary(r => r.Row);
        var sample = columns.ReadImages(input, sampled.ContainsKey)
            .Select(i => new ImageRecord(RowName("row", i.Row), sampled[i.Row].Label) { Content = i.Encoded })
            .ToList();
        var profile = DataProfile.Measure(sample, labelled.Count, columns.ClassNames.Count);
        var fromData = BackboneOptions.ChooseFor(profile);
        var chosen = new BackboneOptions(_options.ImageSize ?? fromData.ImageSize, _options.Features ?? fromData.Features);
        log(string.Create(CultureInfo.InvariantCulture, $"Data: {profile}; backbone input {chosen.ImageSize} px, features {chosen.Features}"));
        return new ResNet18Backbone(chosen);
    }

    /// <summary>The training rows int8 calibration runs on (<see cref="CalibrationSample.Choose"/>), with their encoded bytes.</summary>
    private static List<ImageRecord> CalibrationImages(IDataView input, LabelledImageColumns columns, IReadOnlyList<LabelledRow> train)
    {
        var labels = train.ToDictionary(r => RowName("row", r.Row), r => r.Label, StringComparer.Ordinal);
        var chosen = CalibrationSample.Choose([.. labels.Select(l => new ImageRecord(l.Key, l.Value))], new QuantizationOptions().CalibrationImages)
            .Select(r => r.Path).ToHashSet(StringComparer.Ordinal);
        return [.. columns.ReadImages(input, row => chosen.Contains(RowName("row", row)))
            .Select(i => new ImageRecord(RowName("row", i.Row), labels[RowName("row", i.Row)]) { Content = i.Encoded })];
    }

    /// <summary>
    /// Features of the <paramref name="rows"/> of <paramref name="data"/>, in their order, read and featurized
    /// <see cref="ChunkSize"/> images at a time; the encoded bytes are not kept.
    /// </summary>
    private List<FeaturizedImage> Featurize(FeatureStore store, IDataView data, LabelledImageColumns columns,
        IReadOnlyList<LabelledRow> rows, string prefix, ImageClassificationMetrics.Dataset dataset, Action<string> log)
    {
        var labels = rows.ToDictionary(r => r.Row, r => r.Label);
        var featurized = new List<FeaturizedImage>(rows.Count);
        var chunk = new List<ImageRecord>(Math.Min(ChunkSize, rows.Count));
        var gpuFallbackLogged = false;

        void Flush()
        {
            var offset = featurized.Count;
            var progress = _options.MetricsCallback is { } callback
                ? new CallbackProgress(p => callback(new ImageClassificationMetrics { Bottleneck = new BottleneckMetrics { DatasetUsed = dataset, Index = offset + p.Done } }))
                : null;
            var result = store.Featurize(chunk, progress: progress);
            if (result.GpuFallbackMessage is { } fallback && !gpuFallbackLogged)
            {
                log(fallback);
                gpuFallbackLogged = true;
            }

            featurized.AddRange(result.Images.Select(image => image with { Image = image.Image with { Content = null } }));
            chunk.Clear();
        }

        foreach (var (row, label, encoded) in columns.ReadImages(data, labels.ContainsKey))
        {
            if (label != labels[row])
            {
                throw new InvalidOperationException(
                    $"{RowName(prefix, row)}: the data gave its rows in another order on a second pass (label '{label}', before '{labels[row]}'); cache it first (mlContext.Data.Cache)");
            }

            chunk.Add(new ImageRecord(RowName(prefix, row), labels[row]) { Content = encoded });
            if (chunk.Count == ChunkSize)
            {
                Flush();
            }
        }

        if (chunk.Count > 0)
        {
            Flush();
        }

        return featurized;
    }

    /// <summary>
    /// The featurized training and validation images that can be used: skipped images are logged and left out,
    /// validation images byte-identical to training images are left out (they would flatter the search), and a class
    /// with training rows but no usable training image is an error.
    /// </summary>
    private static (IReadOnlyList<FeaturizedImage> Train, IReadOnlyList<FeaturizedImage> Validation) UsableParts(
        IReadOnlyList<FeaturizedImage> train, IReadOnlyList<FeaturizedImage> validation, Action<string> log)
    {
        foreach (var skipped in train.Concat(validation).Where(i => !i.IsUsable))
        {
            log($"skipped {skipped.Image.Path}: {skipped.SkipReason}");
        }

        var usable = train.Where(i => i.IsUsable).ToList();
        var usableClasses = usable.Select(i => i.Image.Label).ToHashSet(StringComparer.Ordinal);
        var empty = train.Select(i => i.Image.Label).Distinct(StringComparer.Ordinal).Where(c => !usableClasses.Contains(c)).ToList();
        if (empty.Count > 0)
        {
            var example = train.First(i => !i.IsUsable && empty.Contains(i.Image.Label));
            throw new UserInputException(
                $"training data: class(es) {string.Join(", ", empty.Select(c => $"'{c}'"))} have no usable image, e.g. {example.Image.Path}: {example.SkipReason}");
        }

        var (duplicates, keptValidation, _) = DuplicateImages.Find(usable, [.. validation.Where(i => i.IsUsable)], [], excludeHeldOut: true);
        if (duplicates.ValidationInTraining > 0)
        {
            log(string.Create(CultureInfo.InvariantCulture,
                $"Byte-identical images: {duplicates.ValidationInTraining} validation image(s) also in training, left out of validation"));
        }

        return (usable, keptValidation);
    }

    /// <summary>Turns each head epoch into <see cref="TrainMetrics"/> for the callback, scoring the training rows too when asked.</summary>
    private Action<HeadEpoch>? EpochReporter(MLContext ml, ITransformer labelToKey, List<FeatureRow> trainRows, int featureSize)
    {
        if (_options.MetricsCallback is not { } callback)
        {
            return null;
        }

        var trainView = _options.TestOnTrainSet ? labelToKey.Transform(FeatureRow.ToDataView(ml, trainRows, featureSize)) : null;
        return epoch =>
        {
            if (trainView is not null)
            {
                var onTrain = ml.MulticlassClassification.Evaluate(epoch.Head.Transform(trainView), labelColumnName: ColumnNames.LabelKey);
                callback(Metrics(ImageClassificationMetrics.Dataset.Train, epoch, onTrain));
            }

            callback(Metrics(ImageClassificationMetrics.Dataset.Validation, epoch, epoch.Validation));
        };

        static ImageClassificationMetrics Metrics(ImageClassificationMetrics.Dataset dataset, HeadEpoch epoch, MulticlassClassificationMetrics scores) => new()
        {
            Train = new TrainMetrics
            {
                DatasetUsed = dataset,
                Epoch = epoch.Epoch,
                L2Regularization = epoch.L2Regularization,
                Accuracy = (float)scores.MicroAccuracy,
                CrossEntropy = (float)scores.LogLoss,
            },
        };
    }

    /// <summary>Reports on the calling thread, in order (<see cref="Progress{T}"/> would post to the thread pool).</summary>
    private sealed class CallbackProgress(Action<FeaturizationProgress> report) : IProgress<FeaturizationProgress>
    {
        public void Report(FeaturizationProgress value) => report(value);
    }
}
