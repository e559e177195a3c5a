using MlNetFinetune.Training.FineTuning;

namespace MlNetFinetune.Tests.FineTuning;

public sealed class FineTuneOptionsTests
{
    [Theory]
    [InlineData("epochs", "--epochs 0: must be at least 1")]
    [InlineData("learning-rate", "--learning-rate -1: must be a positive number, e.g. 0.002")]
    [InlineData("stages", "--fine-tune-stages 5: must be 1 to 4 (the backbone has 4 stages)")]
    [InlineData("batch", "--fine-tune-batch-size 0: must be at least 1")]
    [InlineData("momentum", "--momentum 1: must be at least 0 and below 1, e.g. 0.9")]
    [InlineData("weight-decay", "--weight-decay NaN: must be 0 or a positive number, e.g. 0.0005")]
    public void BadValuesGetOneLineNamingTheOption(string option, string message)
    {
        // Given
        var options = option switch
        {
            "epochs" => new FineTuneOptions(Epochs: 0),
            "learning-rate" => new FineTuneOptions(LearningRate: -1),
            "stages" => new FineTuneOptions(Stages: 5),
            "batch" => new FineTuneOptions(BatchSize: 0),
            "momentum" => new FineTuneOptions(Momentum: 1),
            _ => new FineTuneOptions(WeightDecay: float.NaN),
        };

        // When
        var error = Assert.Throws<UserInputException>(options.Validate);

        // Then
        Assert.Equal(message, error.Message);
    }

    [Fact]
    public void UnknownScheduleAndAugmentationAreRefusedByName()
    {
        Assert.Equal("--lr-schedule linear: use step, exponential, cosine or one-cycle",
            Assert.Throws<UserInputException>(() => FineTuneOptions.ParseSchedule("linear")).Message);
        Assert.Equal("--augment rotate: use none, flip or flip+shift",
            Assert.Throws<UserInputException>(() => FineTuneOptions.ParseAugmentation("rotate")).Message);
        Assert.Equal(LearningRateSchedule.OneCycle, FineTuneOptions.ParseSchedule("one-cycle"));
        Assert.Equal(Augmentation.FlipShift, FineTuneOptions.ParseAugmentation("flip+shift"));
    }

    [Fact]
    public void DefaultsValidate() => new FineTuneOptions().Validate();

    [Theory]
    [InlineData(LearningRateSchedule.Step, 1.0, 0.1, 0.01)]
    [InlineData(LearningRateSchedule.Exponential, 1.0, 0.1, 0.01)]
    [InlineData(LearningRateSchedule.Cosine, 1.0, 0.5, 0.0)]
    [InlineData(LearningRateSchedule.OneCycle, 0.04, 1.0, 0.0)]
    public void SchedulesStartPeakAndEndWhereDocumented(LearningRateSchedule schedule, double start, double middle, double end)
    {
        // Given 9 epochs (step: x0.1 from epoch 5, x0.01 from epoch 7) of 10 steps
        var options = new FineTuneOptions(Epochs: 9, LearningRate: 1, Schedule: schedule);

        // When
        var first = options.LearningRateAt(0, 0, 10);
        var half = schedule switch
        {
            LearningRateSchedule.Step => options.LearningRateAt(4, 5, 10),
            LearningRateSchedule.Exponential => options.LearningRateAt(4, 0, 10),
            LearningRateSchedule.OneCycle => options.LearningRateAt(2, 7, 10),
            _ => options.LearningRateAt(4, 5, 10),
        };
        var last = options.LearningRateAt(8, schedule is LearningRateSchedule.Exponential or LearningRateSchedule.Step ? 0 : 10, 10);

        // Then
        Assert.Equal(start, first, 3);
        Assert.Equal(middle, half, 3);
        Assert.Equal(end, last, 3);
    }
}
