using System.Globalization;

namespace MlNetFinetune.Training.FineTuning;

/// <summary>How the learning rate moves over the run (per step, from the progress through all epochs).</summary>
public enum LearningRateSchedule
{
    /// <summary>The rate falls tenfold after half and again after three quarters of the epochs.</summary>
    Step,

    /// <summary>The rate falls by the same factor every epoch, to a hundredth of the start in the last epoch.</summary>
    Exponential,

    /// <summary>Half a cosine from the rate down to zero at the last step.</summary>
    Cosine,

    /// <summary>PyTorch's OneCycleLR: up from rate/25 to the rate over the first 30% of steps, then a cosine down to rate/250,000.</summary>
    OneCycle,
}

/// <summary>Augmentation of the training images (the validation and held-out images are never augmented).</summary>
public enum Augmentation
{
    /// <summary>Each image as it is.</summary>
    None,

    /// <summary>A random half of the images mirrored left to right, each epoch.</summary>
    Flip,

    /// <summary>Flips, and each image shifted by up to one cell of the cached map in each direction (edge cells repeated).</summary>
    FlipShift,
}

/// <summary>
/// How the backbone is fine-tuned: the top stages and a new softmax head trained by SGD with momentum. The defaults
/// are the settings measured on a 10,000-image Fashion-MNIST subset (README, "Fine-tuning"): a rate of 0.01 diverged
/// there, 0.002 with a cosine schedule and flips beat the frozen backbone in 5 epochs.
/// </summary>
/// <param name="Stages">How many of the backbone's 4 stages train (from the top); the stem and the stages below stay frozen and run once per image.</param>
/// <param name="Epochs">Passes over the training images.</param>
/// <param name="BatchSize">Images per SGD step.</param>
/// <param name="LearningRate">SGD learning rate of the backbone's stages (the peak rate for one-cycle).</param>
/// <param name="HeadLearningRateMultiple">The head's learning rate is this times <paramref name="LearningRate"/>: the new layer starts from nothing, the backbone from good weights.</param>
/// <param name="Schedule">How the learning rate changes over the run.</param>
/// <param name="WeightDecay">L2 weight decay, added to every gradient as weight decay times the weight (PyTorch's SGD convention).</param>
/// <param name="Momentum">SGD momentum.</param>
/// <param name="Augment">Augmentation of the training images.</param>
/// <param name="Seed">Seeds the head's initial weights, the order of images and the augmentation: the same seed gives the same weights on the CPU.</param>
/// <param name="Patience">Stop when the validation loss has not improved for this many epochs; 0 never stops early.</param>
/// <param name="HeadEpochs">Epochs that train the new head alone on the pretrained network's features before the
/// backbone trains (a linear probe to start from, reported as epoch 0, which can be the best); 0 starts the backbone
/// with a random head.</param>
public sealed record FineTuneOptions(
    int Stages = 2,
    int Epochs = 5,
    int BatchSize = 64,
    float LearningRate = 0.002f,
    float HeadLearningRateMultiple = 10,
    LearningRateSchedule Schedule = LearningRateSchedule.Cosine,
    float WeightDecay = 5e-4f,
    float Momentum = 0.9f,
    Augmentation Augment = Augmentation.Flip,
    int Seed = 1,
    int Patience = 3,
    int HeadEpochs = 5)
{
    /// <summary>Throws <see cref="UserInputException"/> with one line naming the option when the options cannot run.</summary>
    public void Validate()
    {
        static string Text(float value) => value.ToString(CultureInfo.InvariantCulture);

        if (Stages is < 1 or > 4)
        {
            throw new UserInputException($"--fine-tune-stages {Stages}: must be 1 to 4 (the backbone has 4 stages)");
        }

        if (Epochs < 1)
        {
            throw new UserInputException($"--epochs {Epochs}: must be at least 1");
        }

        if (BatchSize < 1)
        {
            throw new UserInputException($"--fine-tune-batch-size {BatchSize}: must be at least 1");
        }

        if (!(LearningRate > 0) || float.IsInfinity(LearningRate))
        {
            throw new UserInputException($"--learning-rate {Text(LearningRate)}: must be a positive number, e.g. 0.002");
        }

        if (!(HeadLearningRateMultiple > 0) || float.IsInfinity(HeadLearningRateMultiple))
        {
            throw new UserInputException($"--head-learning-rate-multiple {Text(HeadLearningRateMultiple)}: must be a positive number, e.g. 10");
        }

        if (!Enum.IsDefined(Schedule))
        {
            throw new UserInputException($"--lr-schedule {Schedule}: use step, exponential, cosine or one-cycle");
        }

        if (!(WeightDecay >= 0) || float.IsInfinity(WeightDecay))
        {
            throw new UserInputException($"--weight-decay {Text(WeightDecay)}: must be 0 or a positive number, e.g. 0.0005");
        }

        if (!(Momentum >= 0 && Momentum < 1))
        {
            throw new UserInputException($"--momentum {Text(Momentum)}: must be at least 0 and below 1, e.g. 0.9");
        }

        if (!Enum.IsDefined(Augment))
        {
            throw new UserInputException($"--augment {Augment}: use none, flip or flip+shift");
        }

        if (Patience < 0)
        {
            throw new UserInputException($"--patience {Patience}: must be 0 (never stop early) or more");
        }

        if (HeadEpochs < 0)
        {
            throw new UserInputException($"--head-epochs {HeadEpochs}: must be 0 (start from a random head) or more");
        }
    }

    /// <summary>Parses a schedule as the command line writes it (step, exponential, cosine, one-cycle).</summary>
    public static LearningRateSchedule ParseSchedule(string text) => text.ToLowerInvariant() switch
    {
        "step" => LearningRateSchedule.Step,
        "exponential" => LearningRateSchedule.Exponential,
        "cosine" => LearningRateSchedule.Cosine,
        "one-cycle" or "onecycle" => LearningRateSchedule.OneCycle,
        _ => throw new UserInputException($"--lr-schedule {text}: use step, exponential, cosine or one-cycle"),
    };

    /// <summary>Parses an augmentation as the command line writes it (none, flip, flip+shift).</summary>
    public static Augmentation ParseAugmentation(string text) => text.ToLowerInvariant() switch
    {
        "none" => Augmentation.None,
        "flip" => Augmentation.Flip,
        "flip+shift" => Augmentation.FlipShift,
        _ => throw new UserInputException($"--augment {text}: use none, flip or flip+shift"),
    };

    /// <summary>
    /// The learning rate of the backbone at <paramref name="step"/> of <paramref name="stepsPerEpoch"/> in
    /// <paramref name="epoch"/> (0-based); it depends on nothing else, so a resumed run follows the same curve.
    /// </summary>
    public float LearningRateAt(int epoch, int step, int stepsPerEpoch)
    {
        var total = (double)Epochs * stepsPerEpoch;
        var progress = ((double)epoch * stepsPerEpoch + step) / total;
        var factor = Schedule switch
        {
            LearningRateSchedule.Step => epoch >= Epochs * 3 / 4 && Epochs >= 4 ? 0.01 : epoch >= Epochs / 2 && Epochs >= 2 ? 0.1 : 1,
            LearningRateSchedule.Exponential => Math.Pow(0.01, Epochs == 1 ? 0 : (double)epoch / (Epochs - 1)),
            LearningRateSchedule.Cosine => 0.5 * (1 + Math.Cos(Math.PI * progress)),
            LearningRateSchedule.OneCycle => OneCycle(progress),
            _ => throw new InvalidOperationException(Schedule.ToString()),
        };
        return (float)(LearningRate * factor);
    }

    /// <summary>Canonical text of every option, stored in checkpoints: a checkpoint resumes only a run with the same options.</summary>
    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"stages={Stages};epochs={Epochs};batch={BatchSize};lr={LearningRate:R};head={HeadLearningRateMultiple:R};schedule={Schedule};wd={WeightDecay:R};momentum={Momentum:R};augment={Augment};seed={Seed};patience={Patience};headEpochs={HeadEpochs}");

    private static double OneCycle(double progress)
    {
        const double warmup = 0.3, start = 1.0 / 25, end = start / 1e4;
        return progress < warmup
            ? start + ((1 - start) * 0.5 * (1 - Math.Cos(Math.PI * progress / warmup)))
            : end + ((1 - end) * 0.5 * (1 + Math.Cos(Math.PI * (progress - warmup) / (1 - warmup))));
    }
}
