using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Trainers;
using Microsoft.ML.Transforms;
using Microsoft.ML.Transforms.Image;

namespace MlNetFinetune.Pipeline;

/// <summary>
/// The estimator chain, in one place. The whole model is
/// label -> key, resize, extract pixels, backbone, normalize, softmax head, key -> label, on images decoded by
/// <see cref="Images.ImageDecoder"/>;
/// training fits it in three parts (<see cref="LabelToKey(MLContext)"/>, <see cref="Featurizer(MLContext, string, int)"/>,
/// <see cref="Head"/>) so that the backbone runs once per image into the bottleneck cache while the head is fitted on
/// cached features. The ML.NET estimator (<see cref="ImageClassificationTrainer"/>) saves the same chain, reading the
/// image from the user's column (<see cref="ChainLayout"/>).
/// </summary>
internal static class ImageClassificationChain
{
    /// <summary>The whole chain as one estimator, exactly what the trainer composes from the fitted parts.</summary>
    public static IEstimator<ITransformer> Build(MLContext ml, string backboneGraphPath, int imageSize, float l2Regularization, int maximumIterations) =>
        LabelToKey(ml)
            .Append(Featurizer(ml, backboneGraphPath, imageSize))
            .Append(Head(ml, l2Regularization, maximumIterations))
            .Append(KeyToLabel(ml));

    /// <summary>
    /// The saved model, composed from the fitted parts: featurizer (resize, pixels, backbone), head, key -> label. The
    /// label -> key step is left out: the head keeps the class names it was trained with, so prediction needs no label column.
    /// </summary>
    public static TransformerChain<ITransformer> Compose(MLContext ml, ITransformer head, string backboneGraphPath, int imageSize) =>
        Compose(ml, head, backboneGraphPath, imageSize, ChainLayout.CommandLine, ml.Data.LoadFromEnumerable(Array.Empty<ImageInput>()));

    /// <summary>
    /// The saved model for <paramref name="layout"/>: featurizer ([decode,] resize, pixels, backbone), head, and a tail
    /// that maps the predicted key to the class name (command line) or names the outputs and removes the working
    /// columns (estimator). <paramref name="inputs"/> gives the input schema; no row is read.
    /// </summary>
    internal static TransformerChain<ITransformer> Compose(MLContext ml, ITransformer head, string backboneGraphPath, int imageSize, ChainLayout layout, IDataView inputs)
    {
        var featurizer = Featurizer(ml, backboneGraphPath, imageSize, layout).Fit(inputs);
        var tail = Tail(ml, layout).Fit(head.Transform(featurizer.Transform(inputs)));
        return new TransformerChain<ITransformer>(featurizer, head, tail);
    }

    /// <summary>The class names of a fitted <see cref="LabelToKey(MLContext)"/> in key order (the order of the scores).</summary>
    public static IReadOnlyList<string> ClassNames(ITransformer labelToKey, DataViewSchema inputSchema)
    {
        var schema = labelToKey.GetOutputSchema(inputSchema);
        VBuffer<ReadOnlyMemory<char>> names = default;
        schema[ColumnNames.LabelKey].GetKeyValues(ref names);
        return [.. names.DenseValues().Select(n => n.ToString())];
    }

    /// <summary>Classes become keys in ordinal order of their names, so scores come in that order.</summary>
    public static IEstimator<ITransformer> LabelToKey(MLContext ml) =>
        ml.Transforms.Conversion.MapValueToKey(ColumnNames.LabelKey, ColumnNames.Label, keyOrdinality: ValueToKeyMappingEstimator.KeyOrdinality.ByValue);

    /// <summary>
    /// Classes become keys in the order of <paramref name="classNames"/>, so scores and predicted keys line up with a key
    /// type the caller already has (the estimator's label column).
    /// </summary>
    internal static IEstimator<ITransformer> LabelToKey(MLContext ml, IReadOnlyList<string> classNames) =>
        ml.Transforms.Conversion.MapValueToKey(ColumnNames.LabelKey, ColumnNames.Label,
            keyOrdinality: ValueToKeyMappingEstimator.KeyOrdinality.ByOccurrence,
            keyData: ml.Data.LoadFromEnumerable(classNames.Select(name => new ClassNameRow { Label = name })));

    /// <summary>Decoded image to planar RGB pixels at the backbone's input size, as the backbone expects them.</summary>
    public static IEstimator<ITransformer> ImageToPixels(MLContext ml, int imageSize) =>
        ImageToPixels(ml, imageSize, ColumnNames.Image, ColumnNames.Image);

    /// <summary>The decoded image in <paramref name="source"/>, resized into <paramref name="resized"/>, to planar RGB pixels.</summary>
    private static IEstimator<ITransformer> ImageToPixels(MLContext ml, int imageSize, string source, string resized) =>
        ml.Transforms.ResizeImages(resized, imageSize, imageSize, source,
                ImageResizingEstimator.ResizingKind.IsoCrop, ImageResizingEstimator.Anchor.Center)
            .Append(ml.Transforms.ExtractPixels(ColumnNames.Pixels, resized, interleavePixelColors: false));

    /// <summary>Pixels through the pretrained backbone into bottleneck features. No trainable parameters.</summary>
    public static IEstimator<ITransformer> Featurizer(MLContext ml, string backboneGraphPath, int imageSize) =>
        ImageToPixels(ml, imageSize)
            .Append(ml.Transforms.ApplyOnnxModel(ColumnNames.Features, ColumnNames.Pixels, backboneGraphPath));

    /// <summary>
    /// The featurizer for <paramref name="layout"/>. Other than on the command line, the input image is copied first
    /// (custom mappings bind fixed column names, and an input named like a working column is restored from the copy),
    /// decoded when it is encoded bytes, and resized into a working column, so the user's columns pass through unchanged.
    /// </summary>
    private static IEstimator<ITransformer> Featurizer(MLContext ml, string backboneGraphPath, int imageSize, ChainLayout layout)
    {
        if (layout.IsCommandLine)
        {
            return Featurizer(ml, backboneGraphPath, imageSize);
        }

        IEstimator<ITransformer> front = ml.Transforms.CopyColumns(ChainLayout.SourceColumn, layout.ImageColumn);
        var decoded = ChainLayout.SourceColumn;
        if (layout.EncodedImage)
        {
            front = front.Append(EncodedImageDecoding.Estimator(ml));
            decoded = ChainLayout.ResizedImageColumn;
        }

        return front
            .Append(ImageToPixels(ml, imageSize, decoded, ChainLayout.ResizedImageColumn))
            .Append(ml.Transforms.ApplyOnnxModel(ColumnNames.Features, ColumnNames.Pixels, backboneGraphPath));
    }

    /// <summary>After the head: key -> class name (command line), or the outputs named and the working columns removed.</summary>
    private static IEstimator<ITransformer> Tail(MLContext ml, ChainLayout layout)
    {
        if (!layout.PredictedLabelAsKey)
        {
            return KeyToLabel(ml);
        }

        var tail = new EstimatorChain<ITransformer>();
        if (layout.ScoreColumn != ColumnNames.Score)
        {
            tail = tail.Append<ITransformer>(ml.Transforms.CopyColumns(layout.ScoreColumn, ColumnNames.Score));
        }

        if (layout.PredictedLabelColumn != ColumnNames.PredictedLabel)
        {
            tail = tail.Append<ITransformer>(ml.Transforms.CopyColumns(layout.PredictedLabelColumn, ColumnNames.PredictedLabel));
        }

        // Dropping removes every column of a name, the user's hidden one too, so an image column named like a working
        // column is written back from the chain's copy instead of dropped.
        if (layout.WorkingColumns.Contains(layout.ImageColumn))
        {
            tail = tail.Append<ITransformer>(ml.Transforms.CopyColumns(layout.ImageColumn, ChainLayout.SourceColumn));
        }

        return tail.Append(ml.Transforms.DropColumns([.. layout.WorkingColumns.Where(c => c != layout.ImageColumn)]));
    }

    /// <summary>The new output layer: L2-regularised multinomial logistic regression on standardised features.</summary>
    public static IEstimator<ITransformer> Head(MLContext ml, float l2Regularization, int maximumIterations) =>
        HeadNormalizer(ml).Append(HeadClassifier(ml, l2Regularization, maximumIterations));

    /// <summary>
    /// Standardises the bottleneck features (the head's first step): each becomes (x - mean) / sd over the training
    /// rows, so the L2 penalty weighs every feature alike. ML.NET's default (<c>fixZero: true</c>) only divides by the
    /// root mean square, which leaves pooled activations, all positive, far from mean 0 (U(4,6) comes out with mean
    /// 0.99, sd 0.12). Constant features become 0.
    /// </summary>
    public static IEstimator<ITransformer> HeadNormalizer(MLContext ml) => ml.Transforms.NormalizeMeanVariance(ColumnNames.Features, fixZero: false);

    /// <summary>The softmax classifier (the head's second step), on standardised features.</summary>
    public static LbfgsMaximumEntropyMulticlassTrainer HeadClassifier(MLContext ml, float l2Regularization, int maximumIterations) =>
        ml.MulticlassClassification.Trainers.LbfgsMaximumEntropy(new LbfgsMaximumEntropyMulticlassTrainer.Options
        {
            LabelColumnName = ColumnNames.LabelKey,
            FeatureColumnName = ColumnNames.Features,
            L2Regularization = l2Regularization,
            L1Regularization = 0,
            MaximumNumberOfIterations = maximumIterations,
        });

    /// <summary>An alternative head for <c>--head auto</c>: SDCA maximum entropy (the same model, another optimiser and loss weighting) on standardised features.</summary>
    public static IEstimator<ITransformer> SdcaHead(MLContext ml) =>
        HeadNormalizer(ml).Append(ml.MulticlassClassification.Trainers.SdcaMaximumEntropy(ColumnNames.LabelKey, ColumnNames.Features, maximumNumberOfIterations: 30));

    /// <summary>An alternative head for <c>--head auto</c>: gradient-boosted trees, stopped early on the validation split.</summary>
    public static Microsoft.ML.Trainers.LightGbm.LightGbmMulticlassTrainer LightGbmHead(MLContext ml) =>
        ml.MulticlassClassification.Trainers.LightGbm(new Microsoft.ML.Trainers.LightGbm.LightGbmMulticlassTrainer.Options
        {
            LabelColumnName = ColumnNames.LabelKey,
            FeatureColumnName = ColumnNames.Features,
            NumberOfIterations = 300,
            LearningRate = 0.1,
            NumberOfLeaves = 31,
            EarlyStoppingRound = 20,
            Seed = 1,
        });

    /// <summary>The predicted key back to the class name, in place.</summary>
    public static IEstimator<ITransformer> KeyToLabel(MLContext ml) =>
        ml.Transforms.Conversion.MapKeyToValue(ColumnNames.PredictedLabel);

    private sealed class ClassNameRow
    {
        [ColumnName(ColumnNames.Label)]
        public string Label { get; set; } = string.Empty;
    }
}
