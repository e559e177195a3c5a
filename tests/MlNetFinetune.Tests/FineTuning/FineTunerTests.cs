using Microsoft.ML.OnnxRuntime;
using MlNetFinetune.Backbones;
using MlNetFinetune.Training.FineTuning;
using Onnx;

namespace MlNetFinetune.Tests.FineTuning;

/// <summary>Real images of the committed sample at 64 px, decoded once for all fine-tuning tests.</summary>
public sealed class FineTuneSampleFixture
{
    public List<LabelledPixels> Train { get; } = SamplePixels.Load(imageSize: 64, perClass: 12);

    public List<LabelledPixels> Validation { get; } = SamplePixels.Load(imageSize: 64, perClass: 4, skip: 12);
}

public sealed class FineTunerTests(FineTuneSampleFixture sample) : IClassFixture<FineTuneSampleFixture>
{
    private static readonly BackboneOptions s_backbone = new(64, "s4");

    /// <summary>Small and quick: the last stage, a head-only epoch, then two epochs of 120 images in batches of 32.</summary>
    private static readonly FineTuneOptions s_options = new(Stages: 1, Epochs: 2, BatchSize: 32, LearningRate: 0.001f, Augment: Augmentation.FlipShift, Seed: 3, HeadEpochs: 1);

    [Fact]
    public void TwoRunsWithTheSameSeedGiveIdenticalWeights()
    {
        // Given / When
        var first = new FineTuner(s_options, s_backbone).Run(sample.Train, sample.Validation, classCount: 10);
        var second = new FineTuner(s_options, s_backbone).Run(sample.Train, sample.Validation, classCount: 10);

        // Then
        AssertSameWeights(first, second);
        Assert.Equal(first.History.Select(h => h.ValidationLoss), second.History.Select(h => h.ValidationLoss));
    }

    [Fact]
    public void AnInterruptedRunResumesToTheSameResult()
    {
        // Given an uninterrupted run, and the same run cancelled after its first epoch
        var folder = Directory.CreateTempSubdirectory("mlnetfinetune-resume-").FullName;
        try
        {
            var whole = new FineTuner(s_options, s_backbone).Run(sample.Train, sample.Validation, 10);
            using var cancel = new CancellationTokenSource();
            var interrupted = new FineTuner(s_options, s_backbone).Run(sample.Train, sample.Validation, 10, folder,
                epochs: new Callback<FineTuneEpoch>(e => { if (e.Epoch == 1) { cancel.Cancel(); } }), cancellation: cancel.Token);

            // When
            var resumed = new FineTuner(s_options, s_backbone).Run(sample.Train, sample.Validation, 10, folder, resume: true);

            // Then
            Assert.True(interrupted.Cancelled);
            Assert.Equal([0, 1], interrupted.History.Select(h => h.Epoch));
            Assert.Equal(FineTuner.Completed, resumed.StopReason);
            Assert.Equal(whole.History.Select(h => h.ValidationLoss), resumed.History.Select(h => h.ValidationLoss));
            AssertSameWeights(whole, resumed);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void ResumingWithOtherOptionsIsRefused()
    {
        // Given a checkpoint of a one-epoch run
        var folder = Directory.CreateTempSubdirectory("mlnetfinetune-resume-").FullName;
        try
        {
            new FineTuner(s_options with { Epochs = 1 }, s_backbone).Run(sample.Train, sample.Validation, 10, folder);

            // When
            var error = Assert.Throws<UserInputException>(() =>
                new FineTuner(s_options with { Epochs = 1, LearningRate = 0.02f }, s_backbone).Run(sample.Train, sample.Validation, 10, folder, resume: true));

            // Then
            Assert.StartsWith($"--resume: the checkpoint in {folder} was made with other options", error.Message);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void CancellingBeforeTheFirstEpochEndsThrows()
    {
        using var cancel = new CancellationTokenSource();
        cancel.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() =>
            new FineTuner(s_options, s_backbone).Run(sample.Train, sample.Validation, 10, cancellation: cancel.Token));
    }

    /// <summary>
    /// With a learning rate too high for 120 images the validation loss rises after the first epoch; patience 1 stops the run
    /// and the result must hold the first epoch's weights: scoring the validation images through the exported
    /// network's batch-1 feature graph (what the Predictor and serve run) and the returned head gives that epoch's loss.
    /// </summary>
    [Fact]
    public void EarlyStoppingReturnsTheBestEpochAndTheExportedNetworkComputesTheTrainingForwardPass()
    {
        // Given / When
        var options = s_options with { Epochs = 4, LearningRate = 0.003f, Patience = 1, Schedule = LearningRateSchedule.Step, HeadEpochs = 0 };
        var result = new FineTuner(options, s_backbone) { FullPrecisionCache = true }.Run(sample.Train, sample.Validation, 10);

        // Then
        Assert.StartsWith("early stopping", result.StopReason);
        Assert.True(result.BestEpoch < result.History[^1].Epoch, $"best epoch {result.BestEpoch} of {result.History[^1].Epoch}");
        Assert.Equal(result.History.MinBy(h => h.ValidationLoss)!.Epoch, result.BestEpoch);
        var graph = ResNet18Backbone.BuildGraph(s_backbone, batchSize: 1, result.Network);
        using var session = new InferenceSession(graph);
        double loss = 0;
        foreach (var image in sample.Validation)
        {
            using var input = OrtValue.CreateTensorValueFromMemory(image.Pixels, [1, 3, 64, 64]);
            using var runOptions = new RunOptions();
            using var outputs = session.Run(runOptions, [Pipeline.ColumnNames.Pixels], [input], [Pipeline.ColumnNames.Features]);
            loss -= Math.Log(result.Head.Probabilities(outputs[0].GetTensorDataAsSpan<float>())[image.Label]);
        }

        var expected = result.History.Single(h => h.Epoch == result.BestEpoch).ValidationLoss;
        Assert.True(Math.Abs((loss / sample.Validation.Count) - expected) <= 1e-4 * expected, $"validation loss through the feature graph {loss / sample.Validation.Count} vs training's {expected}");
    }

    [Fact]
    public void TheHeadTrainsAloneFirstAsEpochZeroAndThePretrainedNetworkIsKeptUntilTheBackboneTrains()
    {
        // Given / When a run whose backbone epoch is cancelled right after the head-only epoch
        using var cancel = new CancellationTokenSource();
        var result = new FineTuner(s_options with { HeadEpochs = 3 }, s_backbone).Run(sample.Train, sample.Validation, 10,
            epochs: new Callback<FineTuneEpoch>(_ => cancel.Cancel()), cancellation: cancel.Token);

        // Then epoch 0 scores well above chance (ln 10 = 2.30) and its network is the pretrained one, folded
        Assert.Equal(0, Assert.Single(result.History).Epoch);
        Assert.Equal(0, result.BestEpoch);
        Assert.True(result.History[0].ValidationLoss < 1.5, $"head-only validation loss {result.History[0].ValidationLoss}");
        var pretrained = ResNet18Backbone.LoadNetwork();
        BatchNormFolding.Fold(pretrained.Graph);
        var expected = pretrained.Graph.Initializer.ToDictionary(i => i.Name, OnnxValues);
        Assert.All(result.Network.Graph.Initializer, i => Assert.Equal(expected[i.Name], OnnxValues(i)));
    }

    private static void AssertSameWeights(FineTuneResult first, FineTuneResult second)
    {
        Assert.Equal(first.Head.Weights, second.Head.Weights);
        Assert.Equal(first.Head.Bias, second.Head.Bias);
        var a = first.Network.Graph.Initializer.ToDictionary(i => i.Name, OnnxValues);
        var b = second.Network.Graph.Initializer.ToDictionary(i => i.Name, OnnxValues);
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        Assert.All(a, p => Assert.Equal(p.Value, b[p.Key]));
    }

    private static byte[] OnnxValues(TensorProto tensor) => tensor.RawData.Length > 0 ? tensor.RawData.ToByteArray() : [.. tensor.FloatData.SelectMany(BitConverter.GetBytes)];

    private sealed class Callback<T>(Action<T> action) : IProgress<T>
    {
        public void Report(T value) => action(value);
    }
}
