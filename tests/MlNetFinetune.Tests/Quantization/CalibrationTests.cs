using MlNetFinetune.Backbones.Quantization;

namespace MlNetFinetune.Tests.Quantization;

[Collection(QuantizedBackboneFixture.Collection)]
public sealed class CalibrationTests(QuantizedBackboneFixture fixture)
{
    [Fact]
    public void SameImagesGiveTheSameFingerprintAndOtherSettingsAnother()
    {
        // Given 20 calibration images
        var images = fixture.Pixels.Where((_, i) => i % 25 == 0).ToList();
        var size = fixture.Options.ImageSize;

        // When they are calibrated twice with the same settings and once clipping more
        var first = Int8Quantizer.Calibrate(fixture.FloatGraph, size, images, new QuantizationOptions());
        var again = Int8Quantizer.Calibrate(fixture.FloatGraph, size, images, new QuantizationOptions());
        var clipped = Int8Quantizer.Calibrate(fixture.FloatGraph, size, images, new QuantizationOptions(Percentile: 99.9));

        // Then a cache keyed on the fingerprint reuses the first run's features and never mixes in the others'
        Assert.Equal(first.Fingerprint(), again.Fingerprint());
        Assert.NotEqual(first.Fingerprint(), clipped.Fingerprint());
        Assert.NotEqual(first.Fingerprint(), fixture.Ranges.Fingerprint());
        Assert.Equal(Int8Quantizer.Fingerprint("float", first), Int8Quantizer.Fingerprint("float", again));
        Assert.NotEqual(Int8Quantizer.Fingerprint("float", first), Int8Quantizer.Fingerprint("other float backbone", first));
    }

    [Fact]
    public void StoredRangesRebuildTheSameGraph()
    {
        // Given the calibrated ranges written as JSON, as a workspace or a shard would store them
        var json = fixture.Ranges.ToJson();

        // When they are read back
        var stored = ActivationRanges.FromJson(json);

        // Then they give the same fingerprint and a byte-identical quantized graph
        Assert.Equal(fixture.Ranges.Fingerprint(), stored.Fingerprint());
        Assert.Equal(fixture.Int8Graph, Int8Quantizer.Quantize(fixture.FloatGraph, stored));
    }

    [Fact]
    public void EveryReluOutputQuantizesWithZeroPointZero()
    {
        // Given the calibrated ranges and the sites of the prepared graph
        var graph = Int8Quantizer.Prepare(fixture.FloatGraph).Graph;
        var reluOutputs = graph.Node.Where(n => n.OpType == "Relu").Select(n => n.Output[0]).ToList();

        // When their uint8 parameters are derived
        var zeroPoints = reluOutputs.Select(r => fixture.Ranges.Uint8Parameters(r).ZeroPoint).ToList();

        // Then every one is 0, the condition under which ONNX Runtime folds the Relu into the quantization after it
        Assert.Equal(19, reluOutputs.Count);
        Assert.All(zeroPoints, zp => Assert.Equal(0, zp));
    }

    [Fact]
    public void PercentileClipsTheRequestedShareOfEachTail()
    {
        // Given 100,000 values evenly spread over -1000..3000 and one far outlier
        var histogram = new RangeHistogram();
        var values = Enumerable.Range(0, 100_000).Select(i => -1000f + i * 0.04f).Append(1e6f).ToArray();

        // When they arrive in two batches, the second forcing the range to grow
        histogram.Add(values.AsSpan(0, 50_000));
        histogram.Add(values.AsSpan(50_000));

        // Then 0.1% per tail is clipped to within the histogram's resolution, and nothing at all keeps min and max
        Assert.InRange(histogram.Upper(0.001), 2996f - 500f, 2996f + 500f);
        Assert.InRange(histogram.Lower(0.001), -996f - 500f, -996f + 500f);
        Assert.Equal(1e6f, histogram.Upper(0));
        Assert.Equal(-1000f, histogram.Lower(0));
    }
}
