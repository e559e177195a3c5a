namespace MlNetFinetune.Pipeline;

/// <summary>
/// How the saved chain meets the rows it is given: which column holds the image and in what form, what the output
/// columns are called, and whether the predicted label stays an ML.NET key. The command-line model reads a decoded image
/// from <c>Image</c> and predicts class names; a model fitted by the ML.NET estimator reads the user's own column and
/// leaves the predicted key for the user's pipeline, as ML.NET's trainers do.
/// </summary>
/// <param name="ImageColumn">The input column holding the image.</param>
/// <param name="EncodedImage">True when that column holds encoded bytes (a byte vector, as <c>LoadRawImageBytes</c>
/// makes) that the chain decodes; false when it holds a decoded <see cref="Microsoft.ML.Data.MLImage"/>.</param>
/// <param name="ScoreColumn">Name of the class probabilities column.</param>
/// <param name="PredictedLabelColumn">Name of the predicted class column.</param>
/// <param name="PredictedLabelAsKey">True leaves the predicted class as a key (the user maps it back); false maps it
/// to the class name inside the chain.</param>
internal sealed record ChainLayout(string ImageColumn, bool EncodedImage, string ScoreColumn, string PredictedLabelColumn, bool PredictedLabelAsKey)
{
    /// <summary>The Trainer's model.zip: <see cref="ImageInput"/> in, <see cref="ImagePrediction"/> out.</summary>
    public static ChainLayout CommandLine { get; } = new(ColumnNames.Image, EncodedImage: false, ColumnNames.Score, ColumnNames.PredictedLabel, PredictedLabelAsKey: false);

    /// <summary>Column holding the chain's own copy of the input image (encoded or decoded).</summary>
    public const string SourceColumn = "MlNetFinetune.Source";

    /// <summary>Column holding the decoded image resized to the backbone's input, when the image is not read from <c>Image</c>.</summary>
    public const string ResizedImageColumn = "MlNetFinetune.Image";

    /// <summary>Whether this is the command-line layout, whose chain works on <c>Image</c> in place.</summary>
    public bool IsCommandLine => this == CommandLine;

    /// <summary>
    /// Columns the chain writes on its way and removes at the end. <c>Pixels</c> and <c>Features</c> keep the backbone
    /// graph's tensor names (ML.NET binds ONNX inputs and outputs by column name), so an input column with one of
    /// those names cannot pass through untouched unless it is the image column, which the chain restores.
    /// </summary>
    public IReadOnlyList<string> WorkingColumns =>
    [
        SourceColumn,
        ResizedImageColumn,
        ColumnNames.Pixels,
        ColumnNames.Features,
        .. ScoreColumn == ColumnNames.Score ? Array.Empty<string>() : [ColumnNames.Score],
        .. PredictedLabelColumn == ColumnNames.PredictedLabel ? Array.Empty<string>() : [ColumnNames.PredictedLabel],
    ];
}
