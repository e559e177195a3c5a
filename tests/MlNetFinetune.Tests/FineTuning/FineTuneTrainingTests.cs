using System.Text.Json;
using MlNetFinetune.Explanations;
using MlNetFinetune.Images;
using MlNetFinetune.Prediction;
using MlNetFinetune.Trainer;
using MlNetFinetune.Training;
using MlNetFinetune.Training.FineTuning;

namespace MlNetFinetune.Tests.FineTuning;

/// <summary>One short fine-tune of the committed sample through the trainer, shared by the tests that read its result.</summary>
public sealed class FineTunedSampleFixture : IDisposable
{
    /// <summary>
    /// The last stage at 64 px: two head-only epochs, then two epochs at a small rate (about 10 s of training on two
    /// cores). With seed 1 the second epoch has the lowest validation loss.
    /// </summary>
    public static readonly FineTuneOptions Options = new(Stages: 1, Epochs: 2, LearningRate: 0.001f, HeadEpochs: 2, Seed: 1);

    public FineTunedSampleFixture()
    {
        Root = Directory.CreateTempSubdirectory("mlnetfinetune-finetune-").FullName;
        Workspace = Path.Combine(Root, "workspace");
        Result = new ImageClassifierTrainer(TrainingOptions(Path.Combine(Root, "uninterrupted"), Options)).Train();
    }

    public string Root { get; }

    public string Workspace { get; }

    public TrainingResult Result { get; }

    /// <summary>The run's options; the explanations after the evaluation are left out, as they are tested elsewhere and cost time here.</summary>
    public TrainingOptions TrainingOptions(string output, FineTuneOptions fineTune, bool resume = false) =>
        new(TestData.SampleFolder, OutputFolder: output, Workspace: Workspace, Seed: 1)
        {
            ImageSize = 64,
            FineTune = fineTune,
            Resume = resume,
            Explanations = new ExplanationOptions(ExplainMistakes: false, FindLabelErrors: false, FindNearDuplicates: false),
        };

    public void Dispose() => Directory.Delete(Root, recursive: true);
}

public sealed class FineTuneTrainingTests(FineTunedSampleFixture fixture) : IClassFixture<FineTunedSampleFixture>
{
    [Fact]
    public void FineTuningLowersTheValidationLossBelowTheFrozenHeadAndThePredictorScoresAsTheTrainerDid()
    {
        // Given the fine-tuned sample model
        var result = fixture.Result;
        var fineTuning = Assert.IsType<Evaluation.FineTuningReport>(result.Report.FineTuning);

        // Then a backbone epoch beats epoch 0, the head trained alone on the frozen network
        var frozenHead = fineTuning.History.Single(h => h.Epoch == 0);
        var best = fineTuning.History.Single(h => h.Epoch == fineTuning.BestEpoch);
        Assert.True(fineTuning.BestEpoch > 0, $"best epoch {fineTuning.BestEpoch}");
        Assert.True(best.ValidationLoss < frozenHead.ValidationLoss, $"validation loss {best.ValidationLoss} after fine-tuning, {frozenHead.ValidationLoss} with the frozen head");
        Assert.Equal([0, 1, 2], fineTuning.History.Select(h => h.Epoch));

        // And the model.zip, loaded as any other, scores every held-out image as the trainer did
        using var classifier = ImageClassifier.Load(result.ModelPath);
        foreach (var expected in result.HeldOutPredictions)
        {
            using var image = ImageDecoder.DecodeFile(expected.Path);
            var actual = classifier.Scores(image);
            Assert.Equal(expected.Scores.Length, actual.Length);
            for (var i = 0; i < actual.Length; i++)
            {
                Assert.True(Math.Abs(expected.Scores[i] - actual[i]) <= 1e-5, $"{expected.Path}: score {i} is {actual[i]}, the trainer said {expected.Scores[i]}");
            }
        }

        // And the manifest and the reports say what was fine-tuned
        var manifest = ModelManifest.ReadFrom(result.ModelPath);
        Assert.Equal(BackboneFineTuning.BackboneName, manifest.Backbone);
        Assert.Equal(new ManifestFineTuning(Stages: 1, Epochs: 2, EpochsRun: 2, BestEpoch: fineTuning.BestEpoch, StopReason: FineTuner.Completed), manifest.FineTuning);
        var folder = Path.GetDirectoryName(result.ModelPath)!;
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, Evaluation.ReportWriter.JsonFileName)));
        Assert.Equal(3, json.RootElement.GetProperty("fineTuning").GetProperty("history").GetArrayLength());
        var html = File.ReadAllText(Path.Combine(folder, Evaluation.HtmlReportWriter.FileName));
        Assert.Contains("class=\"curve-loss\"", html);
        Assert.Contains("class=\"curve-accuracy\"", html);
    }

    [Fact]
    public void CtrlCKeepsTheBestEpochSoFarAndResumeFinishesAsTheUninterruptedRun()
    {
        // Given the same run, cancelled once its first backbone epoch is done
        var output = Path.Combine(fixture.Root, "interrupted");
        using var interrupt = new CancellationTokenSource();
        void CancelAfterFirstEpoch(string line)
        {
            if (line.StartsWith("epoch 1/", StringComparison.Ordinal))
            {
                interrupt.Cancel();
            }
        }

        var interrupted = new ImageClassifierTrainer(fixture.TrainingOptions(output, FineTunedSampleFixture.Options))
            .Train(log: CancelAfterFirstEpoch, cancellation: interrupt.Token);

        // Then it saved a model with the best epoch so far, and says so
        Assert.True(interrupted.FineTuningInterrupted);
        Assert.Equal([0, 1], interrupted.Report.FineTuning!.History.Select(h => h.Epoch));
        Assert.Equal(FineTuner.Cancelled, ModelManifest.ReadFrom(interrupted.ModelPath).FineTuning!.StopReason);

        // When it is resumed
        var resumed = new ImageClassifierTrainer(fixture.TrainingOptions(output, FineTunedSampleFixture.Options, resume: true)).Train();

        // Then it ends as the uninterrupted run: the same network (the fingerprint hashes its weights) and the same scores
        Assert.False(resumed.FineTuningInterrupted);
        Assert.True(resumed.Report.FineTuning!.Resumed);
        Assert.Equal(fixture.Result.Backbone.Fingerprint, resumed.Backbone.Fingerprint);
        Assert.Equal(fixture.Result.Report.FineTuning!.History.Select(h => h.ValidationLoss), resumed.Report.FineTuning.History.Select(h => h.ValidationLoss));
        Assert.Equal(fixture.Result.HeldOutPredictions.Select(p => p.Scores), resumed.HeldOutPredictions.Select(p => p.Scores));
    }

    [Fact]
    public void EarlyStoppingKeepsTheBestEpoch()
    {
        // Given a head trained alone for five epochs, which the first backbone epoch at this rate does not beat
        var options = FineTunedSampleFixture.Options with { Epochs = 3, LearningRate = 0.002f, HeadEpochs = 5, Patience = 1 };

        // When
        var result = new ImageClassifierTrainer(fixture.TrainingOptions(Path.Combine(fixture.Root, "early"), options)).Train();

        // Then it stopped one epoch after the best and the model holds the best
        var fineTuning = result.Report.FineTuning!;
        Assert.StartsWith("early stopping", fineTuning.StopReason);
        var lowest = fineTuning.History.MinBy(h => h.ValidationLoss)!.Epoch;
        Assert.Equal(lowest, fineTuning.BestEpoch);
        Assert.Equal(lowest + 1, fineTuning.History.Max(h => h.Epoch));
        Assert.Equal(lowest, ModelManifest.ReadFrom(result.ModelPath).FineTuning!.BestEpoch);
    }
}

public sealed class FineTuneCommandLineTests
{
    [Theory]
    [InlineData("--epochs", "0", "--epochs 0: must be at least 1")]
    [InlineData("--learning-rate", "-1", "--learning-rate -1: must be a positive number, e.g. 0.002")]
    [InlineData("--fine-tune-stages", "5", "--fine-tune-stages 5: must be 1 to 4 (the backbone has 4 stages)")]
    [InlineData("--lr-schedule", "linear", "--lr-schedule linear: use step, exponential, cosine or one-cycle")]
    [InlineData("--augment", "rotate", "--augment rotate: use none, flip or flip+shift")]
    [InlineData("--momentum", "1", "--momentum 1: must be at least 0 and below 1, e.g. 0.9")]
    [InlineData("--epochs", "x", "'x' is not a whole number for --epochs")]
    public void BadFineTuneValuesStopBeforeAnyWorkWithOneLineAndExitCodeTwo(string option, string value, string expected)
    {
        // Given an output folder that does not exist yet
        var output = Path.Combine(Path.GetTempPath(), "mlnetfinetune-bad-" + Guid.NewGuid().ToString("N"));

        // When
        var outcome = CommandLineRunner.Trainer("--data", TestData.SampleFolder, "--output", output, "--fine-tune", option, value);

        // Then
        Assert.Equal(2, outcome.ExitCode);
        Assert.Equal($"error: {expected}", outcome.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries)[0]);
        Assert.DoesNotContain("images in", outcome.Output);
        Assert.False(Directory.Exists(output));
    }

    [Theory]
    [InlineData("--epochs", "3", "--epochs: only with --fine-tune")]
    [InlineData("--resume", null, "--resume: continues an interrupted --fine-tune; give --fine-tune and the same options as that run")]
    public void FineTuneOptionsWithoutFineTuneAreRefused(string option, string? value, string expected)
    {
        var outcome = CommandLineRunner.Trainer(["--data", TestData.SampleFolder, option, .. value is null ? Array.Empty<string>() : [value]]);

        var line = Assert.Single(outcome.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(2, outcome.ExitCode);
        Assert.Equal($"error: {expected}", line);
    }

    [Fact]
    public void ShardsRefuseFineTuning()
    {
        var outcome = CommandLineRunner.Trainer("--data", TestData.SampleFolder, "--fine-tune", "--shard", "1/2");

        var line = Assert.Single(outcome.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(2, outcome.ExitCode);
        Assert.StartsWith("error: --shard: ", line);
    }

    [Fact]
    public void TheCommandLineMapsOntoFineTuneOptions()
    {
        var options = TrainerCommandLine.Parse(["--data", TestData.SampleFolder, "--fine-tune", "--fine-tune-stages", "3", "--epochs", "7",
            "--fine-tune-batch-size", "32", "--learning-rate", "0.005", "--lr-schedule", "one-cycle", "--weight-decay", "0", "--momentum", "0.8",
            "--augment", "flip+shift", "--patience", "0", "--head-epochs", "1", "--seed", "4", "--resume"]);

        Assert.Equal(new FineTuneOptions(Stages: 3, Epochs: 7, BatchSize: 32, LearningRate: 0.005f, Schedule: LearningRateSchedule.OneCycle,
            WeightDecay: 0, Momentum: 0.8f, Augment: Augmentation.FlipShift, Seed: 4, Patience: 0, HeadEpochs: 1), options.FineTune);
        Assert.True(options.Resume);
        Assert.Null(TrainerCommandLine.Parse(["--data", TestData.SampleFolder]).FineTune);
    }
}
