using Microsoft.ML.Data;

namespace MlNetFinetune.Pipeline;

/// <summary>One row coming out of the model.</summary>
public sealed class ImagePrediction
{
    /// <summary>The most probable class.</summary>
    [ColumnName(ColumnNames.PredictedLabel)]
    public string PredictedLabel { get; set; } = string.Empty;

    /// <summary>Probabilities in the order of the model's classes (see the manifest's class list).</summary>
    [ColumnName(ColumnNames.Score)]
    public float[] Score { get; set; } = [];
}
