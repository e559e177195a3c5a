namespace MlNetFinetune.Pipeline;

/// <summary>The column names of the chain, in the order the chain produces them.</summary>
public static class ColumnNames
{
    /// <summary>Class name, as the folder spelled it.</summary>
    public const string Label = nameof(Label);

    /// <summary>The label as an ML.NET key (classes sorted ordinally).</summary>
    public const string LabelKey = nameof(LabelKey);

    /// <summary>The decoded image (resized in place to the backbone's input size).</summary>
    public const string Image = nameof(Image);

    /// <summary>Planar RGB pixels in 0..255 at the backbone's input size; also the backbone graph's input name.</summary>
    public const string Pixels = nameof(Pixels);

    /// <summary>The bottleneck features; also the backbone graph's output name.</summary>
    public const string Features = nameof(Features);

    /// <summary>Class probabilities in key order.</summary>
    public const string Score = nameof(Score);

    /// <summary>The predicted class: a key as the head writes it, the class name after the last step.</summary>
    public const string PredictedLabel = nameof(PredictedLabel);
}
