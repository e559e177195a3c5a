using Microsoft.ML;

namespace MlNetFinetune;

/// <summary>
/// <c>mlContext.MulticlassClassification.Trainers.ImageClassification(...)</c>: the image-classification trainer of this
/// package, called as ML.NET's <c>Microsoft.ML.Vision</c> one is, so that code written for that trainer ports by changing
/// its <c>using</c>.
/// </summary>
public static class ImageClassificationCatalog
{
    /// <summary>
    /// Trains an image classifier: a pretrained ResNet18 featurizes the images and a new classifier head is trained on
    /// the features.
    /// </summary>
    /// <param name="catalog">The multiclass classification trainers of an <see cref="MLContext"/>.</param>
    /// <param name="labelColumnName">The label column, an ML.NET key.</param>
    /// <param name="featureColumnName">The image column: encoded bytes (<c>LoadRawImageBytes</c>) or decoded images (<c>LoadImages</c>).</param>
    /// <param name="scoreColumnName">Output column of the class probabilities.</param>
    /// <param name="predictedLabelColumnName">Output column of the predicted class (a key of the label's type).</param>
    /// <param name="validationSet">Rows that choose and early-stop the head (never trained on); null splits 10% of each class off the training rows.</param>
    public static ImageClassificationTrainer ImageClassification(
        this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string labelColumnName = "Label",
        string featureColumnName = "Features",
        string scoreColumnName = "Score",
        string predictedLabelColumnName = "PredictedLabel",
        IDataView? validationSet = null) =>
        catalog.ImageClassification(new ImageClassificationTrainer.Options
        {
            LabelColumnName = labelColumnName,
            FeatureColumnName = featureColumnName,
            ScoreColumnName = scoreColumnName,
            PredictedLabelColumnName = predictedLabelColumnName,
            ValidationSet = validationSet,
        });

    /// <summary>Trains an image classifier with all options (see <see cref="ImageClassificationTrainer.Options"/>).</summary>
    /// <param name="catalog">The multiclass classification trainers of an <see cref="MLContext"/>.</param>
    /// <param name="options">The trainer's options.</param>
    public static ImageClassificationTrainer ImageClassification(
        this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        ImageClassificationTrainer.Options options)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new ImageClassificationTrainer(options);
    }
}
