using MlNetFinetune.Backbones;
using MlNetFinetune.Training.FineTuning;

namespace MlNetFinetune.Tests.FineTuning;

/// <summary>
/// The analytic gradients of the train-step graph against central finite differences of its own loss, in float32.
/// ReLU kinks make the loss only piecewise smooth: a difference whose step moves some ReLU input across zero is off
/// by O(h) (seen here: 7% at h = 1e-2 and 0.2% at h = 1e-3 on the same correct coordinate; the same gradients agree
/// with PyTorch float64 autograd to 2e-7). So the random net and batch are chosen, and checked, to put no ReLU input
/// within 1e-3 of zero, and the steps (h = 1e-3, relative to each tensor's scale for the direction) stay below that.
/// Float32 rounding of the loss puts about 1e-4 of noise on a difference at that step, hence the absolute floor.
/// A gradient 10% off fails the same check (second test).
/// </summary>
public sealed class GradientCheckTests
{
    private const double Step = 1e-3;
    private const double Tolerance = 0.01;
    private const double NoiseFloor = 1e-4;

    [Fact]
    public void SmallNetworkGradientsMatchFiniteDifferences()
    {
        // Given a random residual conv net with asymmetric pads, grid and global taps, a random batch, and no ReLU input near its kink
        using var probe = SmallProbe(out var weights);
        Assert.True(probe.SmallestReluInput(weights) > Step, "a ReLU input lies within the finite-difference step of zero");

        // When
        var (_, gradients) = probe.LossAndGradients(weights);

        // Then a random direction through all weights, and the 3 largest coordinates of every tensor, agree with finite differences
        var (analytic, numeric) = probe.Directional(weights, gradients, seed: 3, Step);
        Assert.True(Math.Abs(analytic - numeric) <= Tolerance * Math.Abs(analytic), $"directional derivative {analytic} vs finite difference {numeric}");
        Assert.Equal(12, gradients.Count);
        foreach (var name in gradients.Keys)
        {
            foreach (var (index, a, n) in probe.Coordinates(weights, gradients, name, count: 3, Step))
            {
                Assert.True(Math.Abs(a - n) <= (Tolerance * Math.Abs(a)) + NoiseFloor, $"{name}[{index}]: gradient {a} vs finite difference {n}");
            }
        }
    }

    [Fact]
    public void CoordinateCheckRejectsAGradientTenPercentOff()
    {
        // Given the same net, and its gradient with the stride-2 convolution's part scaled by 1.1
        using var probe = SmallProbe(out var weights);
        var (_, gradients) = probe.LossAndGradients(weights);
        var wrong = gradients.ToDictionary(g => g.Key, g => g.Key == "wa" ? [.. g.Value.Select(v => v * 1.1f)] : g.Value);

        // When
        var checks = probe.Coordinates(weights, wrong, "wa", count: 3, Step).ToList();

        // Then the check the other test passes fails on every coordinate
        Assert.All(checks, c => Assert.True(Math.Abs(c.Analytic - c.Numeric) > (Tolerance * Math.Abs(c.Analytic)) + NoiseFloor));
    }

    /// <summary>
    /// The real backbone's last stage has ReLU inputs within 1e-5 of zero, so a direction through all its weights
    /// crosses kinks at any usable step (seen: 3.7% off at h = 1e-2 falling to 0.9% at 3e-4, as a kink error does).
    /// Single coordinates move few ReLU inputs; at h = 3e-3 the loss (about 4) moves well above float32 rounding.
    /// </summary>
    [Fact]
    public void RealLastStageGradientsMatchFiniteDifferencesOnTheLargestCoordinates()
    {
        // Given stage 4 of the real backbone over the maps of ten real images at 64 px, and the fixture's head
        var images = SamplePixels.Load(imageSize: 64, perClass: 1);
        var cut = BackboneCut.Create(new BackboneOptions(64, "s4"), trainedStages: 1);
        var maps = PyTorchReferenceTests.Frozen(cut, [.. images.SelectMany(i => i.Pixels)], images.Count, 64);
        var weights = PyTorchReferenceTests.InitialWeights(cut, classes: 10);
        using var probe = new GradientProbe(cut.Network, cut.Taps, 10, maps, [.. images.Select(i => (long)i.Label)]);

        // When
        var (_, gradients) = probe.LossAndGradients(weights);

        // Then the 3 largest coordinates of the stride-2 conv, the projection, the last conv and its bias, and the head agree
        var convs = cut.Network.Convs;
        var stride2 = convs.First(c => c.Stride == 2 && c.Taps == 9);
        var projection = convs.First(c => c.Stride == 2 && c.Taps == 1);
        foreach (var name in new[] { stride2.WeightName, projection.WeightName, convs[^1].WeightName, convs[^1].BiasName, TrainingGraphBuilder.HeadWeight })
        {
            foreach (var (index, a, n) in probe.Coordinates(weights, gradients, name, count: 3, step: 3e-3))
            {
                Assert.True(Math.Abs(a - n) <= (Tolerance * Math.Abs(a)) + 2e-4, $"{name}[{index}]: gradient {a} vs finite difference {n}");
            }
        }
    }

    private static GradientProbe SmallProbe(out Dictionary<string, float[]> weights)
    {
        var (network, taps, initial) = SmallNetwork.Create(seed: 23);
        var (maps, labels) = SmallNetwork.Batch(images: 3, seed: 123);
        weights = initial;
        return new GradientProbe(network, taps, SmallNetwork.Classes, maps, labels, standardisation: 4);
    }
}
