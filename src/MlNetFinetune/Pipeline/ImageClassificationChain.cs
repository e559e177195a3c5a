using Microsoft.ML;
using Microsoft.ML.Trainers;
using Microsoft.ML.Transforms;
using Microsoft.ML.Transforms.Image;

namespace MlNetFinetune.Pipeline;

/// <summary>
/// The estimator chain, in one place. The whole model is
/// label -> key, resize, extract pixels, backbone, normalize, softmax head, key -> label, on images decoded by
/// <see cref="ImageDecoder"/>;
/// training fits it in three parts (<see cref="LabelToKey"/>, <see cref="Featurizer"/>, <see cref="Head"/>) so that the
/// backbone runs once per image into the bottleneck cache while the head is fitted on cached features.
/// </summary>
public static class ImageClassificationChain
{
    /// <summary>The whole chain as one estimator, exactly what the trainer composes from the fitted parts.</summary>
    public static IEstimator<ITransformer> Build(MLContext ml, string backboneGraphPath, int imageSize, float l2Regularization, int maximumIterations) =>
        LabelToKey(ml)
            .Append(Featurizer(ml, backboneGraphPath, imageSize))
            .Append(Head(ml, l2Regularization, maximumIterations))
            .Append(KeyToLabel(ml));

    /// <summary>Classes become keys in ordinal order of their names, so scores come in that order.</summary>
    public static IEstimator<ITransformer> LabelToKey(MLContext ml) =>
        ml.Transforms.Conversion.MapValueToKey(ColumnNames.LabelKey, ColumnNames.Label, keyOrdinality: ValueToKeyMappingEstimator.KeyOrdinality.ByValue);

    /// <summary>Decoded image to planar RGB pixels at the backbone's input size, as the backbone expects them.</summary>
    public static IEstimator<ITransformer> ImageToPixels(MLContext ml, int imageSize) =>
        ml.Transforms.ResizeImages(ColumnNames.Image, imageSize, imageSize, ColumnNames.Image,
                ImageResizingEstimator.ResizingKind.IsoCrop, ImageResizingEstimator.Anchor.Center)
            .Append(ml.Transforms.ExtractPixels(ColumnNames.Pixels, ColumnNames.Image, interleavePixelColors: false));

    /// <summary>Pixels through the pretrained backbone into bottleneck features. No trainable parameters.</summary>
    public static IEstimator<ITransformer> Featurizer(MLContext ml, string backboneGraphPath, int imageSize) =>
        ImageToPixels(ml, imageSize)
            .Append(ml.Transforms.ApplyOnnxModel(ColumnNames.Features, ColumnNames.Pixels, backboneGraphPath));

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
}
