using MlNetFinetune.Images;
using Microsoft.ML.Data;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Prediction;

namespace MlNetFinetune.Explanations;

/// <summary>A prediction with where the model looked: the top classes and the occlusion map of every class.</summary>
/// <param name="Label">The predicted class.</param>
/// <param name="Confidence">Its probability.</param>
/// <param name="Top">The most probable classes, best first.</param>
/// <param name="Map">The occlusion map (every class's heat; <see cref="OcclusionMap.Method"/> names the method).</param>
public sealed record Explanation(string Label, float Confidence, IReadOnlyList<LabelScore> Top, OcclusionMap Map);

/// <summary>
/// Explains the predictions of a saved model.zip by occlusion sensitivity: each explanation runs
/// <see cref="OcclusionOptions.Variants"/> images (50 by default) through the model in one backbone batch, about 50
/// predictions' worth of work. Safe to call from several threads; explanations run one at a time.
/// </summary>
public sealed class ModelExplainer : IDisposable
{
    private readonly ExplanationModel _model;

    private ModelExplainer(ExplanationModel model, ModelManifest manifest, OcclusionOptions options)
    {
        _model = model;
        Manifest = manifest;
        Options = options;
    }

    /// <summary>The manifest of the model explained.</summary>
    public ModelManifest Manifest { get; }

    /// <summary>How the occlusion maps are measured.</summary>
    public OcclusionOptions Options { get; }

    /// <summary>
    /// Loads <paramref name="modelPath"/>; throws <see cref="UserInputException"/> naming the file when it is not a
    /// readable MlNetFinetune model or its input size does not split into the occlusion grid.
    /// </summary>
    public static ModelExplainer Load(string modelPath, OcclusionOptions? options = null)
    {
        options ??= new OcclusionOptions();
        options.Validate();
        var manifest = ModelManifest.ReadFrom(modelPath);
        options.CheckFits(manifest.ImageSize);
        ExplanationModel model;
        try
        {
            model = ExplanationModel.FromModelFile(modelPath, manifest.ImageSize, manifest.FeatureSize, manifest.Classes);
        }
        catch (Exception e) when (e is InvalidOperationException or InvalidDataException or FormatException or IOException or ArgumentException or Google.Protobuf.InvalidProtocolBufferException)
        {
            throw new UserInputException($"{modelPath}: the model inside cannot be loaded for explanations ({e.Message.Split('\n')[0].Trim()})");
        }

        return new ModelExplainer(model, manifest, options);
    }

    /// <summary>Explains an encoded image; throws <see cref="InvalidDataException"/> naming <paramref name="source"/> when it cannot be decoded.</summary>
    public Explanation Explain(byte[] encoded, string source = "image", int top = 3)
    {
        using var image = ImageDecoder.Decode(encoded, source, alpha: Manifest.InputAlpha);
        return Explain(image, top);
    }

    /// <summary>Explains a decoded image, decoded as the model's <see cref="ModelManifest.InputAlpha"/> says.</summary>
    public Explanation Explain(MLImage image, int top = 3)
    {
        var map = _model.Explain(image, Options);
        return Describe(map, top);
    }

    /// <summary>Releases the explainer's ONNX Runtime session and ML.NET model.</summary>
    public void Dispose() => _model.Dispose();

    /// <summary>The prediction an occlusion map starts from, ranked as <see cref="ImageClassifier"/> ranks it.</summary>
    internal static Explanation Describe(OcclusionMap map, int top)
    {
        var ranked = map.Probabilities
            .Select((score, i) => new LabelScore(map.Classes[i], score))
            .OrderByDescending(s => s.Score)
            .ThenBy(s => s.Label, StringComparer.Ordinal)
            .ToList();
        return new Explanation(ranked[0].Label, ranked[0].Score, [.. ranked.Take(Math.Max(1, top))], map);
    }
}
