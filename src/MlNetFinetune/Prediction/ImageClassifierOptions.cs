using System.Globalization;
using MlNetFinetune.Images;

namespace MlNetFinetune.Prediction;

/// <summary>How <see cref="ImageClassifier.Load(ImageClassifierOptions)"/> loads and runs a model. Binds from configuration
/// (e.g. the <c>"ImageClassifier"</c> section of appsettings.json).</summary>
public sealed record ImageClassifierOptions
{
    /// <summary>The configuration section <see cref="Hosting.ImageClassifierServiceCollectionExtensions.AddImageClassifier(Microsoft.Extensions.DependencyInjection.IServiceCollection, Microsoft.Extensions.Configuration.IConfiguration)"/> reads by default.</summary>
    public const string SectionName = "ImageClassifier";

    /// <summary>model.zip written by the Trainer. Required.</summary>
    public string ModelPath { get; init; } = string.Empty;

    /// <summary>Predictions that run at once; further callers wait. Null: <see cref="ImageClassifier.DefaultMaxConcurrency"/>.</summary>
    public int? MaxConcurrency { get; init; }

    /// <summary>CUDA device for the backbone (needs the GPU build of ONNX Runtime); null runs on the CPU. Falls back to the CPU when the device is not usable.</summary>
    public int? GpuDevice { get; init; }

    /// <summary>
    /// Loads the model again when its file is replaced (written anew or renamed over), like ML.NET's
    /// PredictionEnginePool with watchForChanges: requests in flight finish on the model they started with. A file that
    /// cannot be loaded leaves the old model serving. Default false.
    /// </summary>
    public bool WatchForChanges { get; init; }

    /// <summary>
    /// How large an image may be: pixels (decided from the real frame sizes before decoding) and encoded bytes (checked
    /// while a stream or file is read). Default <see cref="ImageLimits.Default"/>: 40 megapixels, 64 MiB.
    /// </summary>
    public ImageLimits Limits { get; init; } = ImageLimits.Default;

    /// <summary>Throws <see cref="UserInputException"/> naming the setting when a value cannot work.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(ModelPath))
        {
            throw new UserInputException($"{nameof(ModelPath)}: give the model.zip written by the Trainer");
        }

        if (MaxConcurrency is < 1)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"{nameof(MaxConcurrency)} {MaxConcurrency}: must be at least 1"));
        }

        if (GpuDevice is < 0)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"{nameof(GpuDevice)} {GpuDevice}: a CUDA device number is 0 or more"));
        }

        Limits.Validate();
    }
}
