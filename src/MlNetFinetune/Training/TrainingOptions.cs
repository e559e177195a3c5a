using System.Globalization;
using MlNetFinetune.Backbones;
using MlNetFinetune.Backbones.Quantization;
using MlNetFinetune.Pipeline;

namespace MlNetFinetune.Training;

/// <summary>Everything a training run needs; every member but <see cref="DataFolder"/> has a default that works.</summary>
/// <param name="DataFolder">Training images, one subfolder per class.</param>
/// <param name="TestFolder">Held-out images with the same class subfolders; null splits <see cref="HeldOutFraction"/> off the data folder.</param>
/// <param name="OutputFolder">Receives model.zip, report.json, report.md and heldout-predictions.csv.</param>
/// <param name="Workspace">Folder of the persistent bottleneck cache; null uses <see cref="DefaultWorkspace"/>.</param>
/// <param name="Seed">Seeds the splits and ML.NET.</param>
/// <param name="HeldOutFraction">Share of each class held out when there is no test folder.</param>
/// <param name="ValidationFraction">Share of each training class used to choose settings.</param>
public sealed record TrainingOptions(
    string DataFolder,
    string? TestFolder = null,
    string OutputFolder = "out",
    string? Workspace = null,
    int Seed = 1,
    double HeldOutFraction = 0.2,
    double ValidationFraction = 0.1)
{
    /// <summary>Backbone input side in pixels; null chooses it from the data (<see cref="BackboneOptions.ChooseFor"/>).</summary>
    public int? ImageSize { get; init; }

    /// <summary>Pooled backbone taps, e.g. "s4" or "s2g2+s3g2+s4"; null chooses them from the data.</summary>
    public string? Features { get; init; }

    /// <summary>
    /// The pretrained network: null or "resnet18" for the built-in ImageNet ResNet18, else the path of an ONNX image
    /// model (see <see cref="OnnxFileBackbone"/>) whose input convention is <see cref="Pixels"/>.
    /// </summary>
    public string? Backbone { get; init; }

    /// <summary>What the ONNX file of <see cref="Backbone"/> expects in its input; unused for the built-in backbone.</summary>
    public PixelConvention Pixels { get; init; } = PixelConvention.ImageNet;

    /// <summary>Whether <see cref="Backbone"/> names the built-in network.</summary>
    public bool BuiltInBackbone => Backbone is null || Backbone.Equals(BuiltInBackboneName, StringComparison.OrdinalIgnoreCase);

    /// <summary>The name of the built-in backbone on the command line.</summary>
    public const string BuiltInBackboneName = "resnet18";

    /// <summary>
    /// The backbone's number format. <see cref="Backbones.Precision.Int8"/> quantizes the built-in backbone with
    /// activation ranges calibrated on <see cref="Quantization"/>'s sample of the training images; it runs on the CPU
    /// only. Default <see cref="Backbones.Precision.Fp32"/> (the README gives the measurement behind the choice).
    /// </summary>
    public Precision Precision { get; init; } = Precision.Fp32;

    /// <summary>How the backbone is calibrated and quantized when <see cref="Precision"/> is int8.</summary>
    public QuantizationOptions Quantization { get; init; } = new();

    /// <summary>Also trains on the horizontally mirrored view of every training image (featurized once, cached).</summary>
    public bool MirroredViews { get; init; }

    /// <summary>
    /// Leaves held-out images whose bytes equal a training or validation image's out of the held-out score (default):
    /// they measure memory, not generalisation. They are counted and listed in the report either way.
    /// </summary>
    public bool ExcludeHeldOutDuplicates { get; init; } = true;

    /// <summary>How the head is trained and chosen.</summary>
    public HeadOptions Head { get; init; } = new();

    /// <summary>How the backbone runs over the images.</summary>
    public FeaturizationOptions Featurization { get; init; } = new();

    /// <summary>
    /// Fine-tunes the top stages of the built-in backbone on the training images before the head is fitted on its
    /// features (<c>--fine-tune</c>); null uses the pretrained backbone as it is.
    /// </summary>
    public FineTuning.FineTuneOptions? FineTune { get; init; }

    /// <summary>Continues an interrupted fine-tuning from the checkpoint of its last finished epoch in the workspace.</summary>
    public bool Resume { get; init; }

    /// <summary>What the run explains after evaluating: heat maps of the gallery's mistakes, suspected label errors, near duplicates.</summary>
    public Explanations.ExplanationOptions Explanations { get; init; } = new();

    /// <summary>File name of the saved model in <see cref="OutputFolder"/>.</summary>
    public const string ModelFileName = "model.zip";

    /// <summary>Throws <see cref="UserInputException"/> naming the option when a value cannot work, before any work starts.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(DataFolder))
        {
            throw new UserInputException("--data: give the folder of training images");
        }

        if (string.IsNullOrWhiteSpace(OutputFolder))
        {
            throw new UserInputException("--output: give a folder for the model and reports");
        }

        if (!(HeldOutFraction is > 0 and < 1))
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"--held-out-fraction {HeldOutFraction}: must be between 0 and 1 (exclusive), e.g. 0.2"));
        }

        if (!(ValidationFraction is > 0 and < 1))
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"validation fraction {ValidationFraction}: must be between 0 and 1 (exclusive)"));
        }

        if (!BuiltInBackbone)
        {
            if (!File.Exists(Backbone))
            {
                throw new UserInputException($"--backbone {Backbone}: no such ONNX file (or use {BuiltInBackboneName})");
            }

            Pixels.Validate();
        }
        else if (ImageSize is int size)
        {
            new BackboneOptions(size, Features ?? "s4").Validate();
        }
        else if (Features is string features)
        {
            new BackboneOptions(BackboneOptions.MaximumImageSize, features).ParseTaps();
        }

        if (!Enum.IsDefined(Precision))
        {
            throw new UserInputException($"--precision {Precision}: use fp32 or int8");
        }

        if (Precision == Precision.Int8)
        {
            if (!BuiltInBackbone)
            {
                throw new UserInputException($"--precision int8: only the built-in {BuiltInBackboneName} backbone is quantized; use --precision fp32 with --backbone {Backbone}");
            }

            if (Featurization.GpuDevice is not null)
            {
                throw new UserInputException("--precision int8 runs on the CPU only (ONNX Runtime fuses the int8 graph into its CPU kernels); use --precision fp32 with --gpu");
            }

            Quantization.Validate();
        }

        Head.Validate();
        Featurization.Validate();
        if (FineTune is not null)
        {
            if (!BuiltInBackbone)
            {
                throw new UserInputException($"--fine-tune: only the built-in {BuiltInBackboneName} backbone can be fine-tuned, not {Backbone}");
            }

            if (Precision != Precision.Fp32)
            {
                throw new UserInputException("--fine-tune: trains the fp32 backbone; it does not combine with --precision int8");
            }

            FineTune.Validate();
        }
        else if (Resume)
        {
            throw new UserInputException("--resume: continues an interrupted --fine-tune; give --fine-tune and the same options as that run");
        }
        Explanations.Validate();
    }

    /// <summary>$XDG_CACHE_HOME/mlnetfinetune, else ~/.cache/mlnetfinetune: features are keyed by content, so one cache serves every data set.</summary>
    public static string DefaultWorkspace
    {
        get
        {
            var root = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            if (string.IsNullOrEmpty(root))
            {
                root = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
            }

            return Path.Combine(root, "mlnetfinetune");
        }
    }
}
