using System.Globalization;
using MlNetFinetune.Training.FineTuning;

namespace MlNetFinetune.Benchmarks;

/// <summary>Options of the two fine-tuning measurements (finetune-speed and finetune-quality).</summary>
/// <param name="DataFolder">Training images, one subfolder per class.</param>
/// <param name="TestFolder">Held-out images (finetune-quality); null holds out nothing.</param>
/// <param name="Images">finetune-speed: how many training images (round-robin over classes); finetune-quality: at most this many per class, 0 for all.</param>
/// <param name="ImageSize">Backbone input side.</param>
/// <param name="Features">Taps of the fine-tuned head.</param>
/// <param name="RefitFeatures">finetune-quality: taps of the L-BFGS head refitted on the fine-tuned network (what the frozen pipeline would fit), null to skip.</param>
/// <param name="Repeats">finetune-speed: alternating ONNX Runtime / PyTorch runs.</param>
/// <param name="Python">The Python with torch and onnx.</param>
/// <param name="ValidationFraction">finetune-quality: share of each training class used for validation.</param>
/// <param name="MirroredViews">Flip by caching each mirrored image's own map instead of mirroring the cached map.</param>
/// <param name="LogFile">finetune-quality: also append the summary line to this file.</param>
public sealed record FineTuneBenchOptions(
    string DataFolder,
    string? TestFolder,
    int Images,
    int ImageSize,
    string Features,
    string? RefitFeatures,
    FineTuneOptions FineTune,
    int Repeats,
    string Python,
    double ValidationFraction,
    bool MirroredViews,
    string? LogFile)
{
    public static FineTuneBenchOptions Parse(string[] args, bool speed)
    {
        var options = new FineTuneBenchOptions("data/fashion-mnist-sample", null, speed ? 512 : 0, 64, "s4", null,
            speed ? new FineTuneOptions(Epochs: 1, LearningRate: 0.001f, Augment: Augmentation.Flip, HeadEpochs: 0) : new FineTuneOptions(),
            2, "/usr/bin/python3", 0.1, false, null);
        for (var i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new UserInputException($"{args[i]}: missing value");
            int Int() => int.TryParse(Value(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n : throw new UserInputException($"{args[i - 1]} {args[i]}: expected a whole number");
            float Float() => float.TryParse(Value(), NumberStyles.Float, CultureInfo.InvariantCulture, out var x) ? x : throw new UserInputException($"{args[i - 1]} {args[i]}: expected a number");
            var f = options.FineTune;
            options = args[i] switch
            {
                "--data" => options with { DataFolder = Value() },
                "--test" => options with { TestFolder = Value() },
                "--images" => options with { Images = Int() },
                "--image-size" => options with { ImageSize = Int() },
                "--features" => options with { Features = Value() },
                "--refit-features" => options with { RefitFeatures = Value() },
                "--repeats" => options with { Repeats = Int() },
                "--python" => options with { Python = Value() },
                "--validation-fraction" => options with { ValidationFraction = double.Parse(Value(), CultureInfo.InvariantCulture) },
                "--mirrored-views" => options with { MirroredViews = true },
                "--log" => options with { LogFile = Value() },
                "--fine-tune-stages" => options with { FineTune = f with { Stages = Int() } },
                "--epochs" => options with { FineTune = f with { Epochs = Int() } },
                "--batch-size" => options with { FineTune = f with { BatchSize = Int() } },
                "--learning-rate" => options with { FineTune = f with { LearningRate = Float() } },
                "--head-learning-rate-multiple" => options with { FineTune = f with { HeadLearningRateMultiple = Float() } },
                "--lr-schedule" => options with { FineTune = f with { Schedule = FineTuneOptions.ParseSchedule(Value()) } },
                "--weight-decay" => options with { FineTune = f with { WeightDecay = Float() } },
                "--momentum" => options with { FineTune = f with { Momentum = Float() } },
                "--augment" => options with { FineTune = f with { Augment = FineTuneOptions.ParseAugmentation(Value()) } },
                "--seed" => options with { FineTune = f with { Seed = Int() } },
                "--patience" => options with { FineTune = f with { Patience = Int() } },
                "--head-epochs" => options with { FineTune = f with { HeadEpochs = Int() } },
                _ => throw new UserInputException($"{args[i]}: unknown option"),
            };
        }

        options.FineTune.Validate();
        return options;
    }

    /// <summary>The settings as one line, for logs.</summary>
    public string Describe()
    {
        var f = FineTune;
        return string.Create(CultureInfo.InvariantCulture,
            $"size {ImageSize} features {Features} stages {f.Stages} epochs {f.Epochs} batch {f.BatchSize} lr {f.LearningRate} head x{f.HeadLearningRateMultiple} {f.Schedule} wd {f.WeightDecay} momentum {f.Momentum} augment {f.Augment}{(MirroredViews ? " (mirrored views)" : "")} seed {f.Seed} patience {f.Patience} head epochs {f.HeadEpochs}");
    }
}
