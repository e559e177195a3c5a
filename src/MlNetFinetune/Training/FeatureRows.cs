using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetFinetune.Pipeline;

namespace MlNetFinetune.Training;

/// <summary>A labelled bottleneck feature vector, as the head trains on it.</summary>
internal sealed class FeatureRow
{
    [ColumnName(ColumnNames.Label)]
    public string Label { get; set; } = string.Empty;

    [ColumnName(ColumnNames.Features)]
    public float[] Features { get; set; } = [];

    /// <summary>An <see cref="IDataView"/> over cached features, with the vector size the chain's backbone column has.</summary>
    public static IDataView ToDataView(MLContext ml, IEnumerable<FeatureRow> rows, int featureSize)
    {
        var schema = SchemaDefinition.Create(typeof(FeatureRow));
        schema[ColumnNames.Features].ColumnType = new VectorDataViewType(NumberDataViewType.Single, featureSize);
        return ml.Data.LoadFromEnumerable(rows, schema);
    }
}
