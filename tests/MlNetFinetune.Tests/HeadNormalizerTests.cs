using Microsoft.ML;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Training;

namespace MlNetFinetune.Tests;

public sealed class HeadNormalizerTests
{
    [Fact]
    public void HeadNormalizerStandardisesShiftedFeaturesToMeanZeroAndUnitDeviation()
    {
        // Given features far from zero, as pooled activations are: U(4,6), U(100,300), and a constant
        var random = new Random(3);
        var rows = Enumerable.Range(0, 5000).Select(_ => new FeatureRow
        {
            Label = "a",
            Features = [4 + 2 * random.NextSingle(), 100 + 200 * random.NextSingle(), 7f],
        }).ToList();
        var ml = new MLContext(1);
        var data = FeatureRow.ToDataView(ml, rows, featureSize: 3);

        // When
        var normalized = ImageClassificationChain.HeadNormalizer(ml).Fit(data).Transform(data);

        // Then
        var values = ml.Data.CreateEnumerable<FeatureRow>(normalized, reuseRowObject: false).Select(r => r.Features).ToList();
        for (var feature = 0; feature < 2; feature++)
        {
            var column = values.Select(v => (double)v[feature]).ToList();
            var mean = column.Average();
            var sd = Math.Sqrt(column.Sum(x => (x - mean) * (x - mean)) / column.Count);
            Assert.InRange(mean, -1e-3, 1e-3);
            Assert.InRange(sd, 0.99, 1.01);
        }

        Assert.All(values, v => Assert.Equal(0f, v[2]));
    }
}
