namespace MlNetFinetune.Backbones;

/// <summary>
/// A pretrained image network as a feature extractor: one ONNX graph from planar RGB pixels in 0..255 at
/// <see cref="ImageSize"/> (input <c>Pixels</c>, [N,3,S,S]) to the bottleneck features (output <c>Features</c>).
/// Each backbone folds its own pixel convention (channel order, mean, scale) into the graph, so everything downstream —
/// the bottleneck cache, the saved chain, the Predictor, export — is the same for every backbone.
/// </summary>
public interface IBackbone
{
    /// <summary>Short name for people and the model manifest, e.g. "resnet18".</summary>
    string Name { get; }

    /// <summary>Side of the square input in pixels.</summary>
    int ImageSize { get; }

    /// <summary>The pooled layers the features come from, as text (e.g. "s2g2+s3g2+s4").</summary>
    string Features { get; }

    /// <summary>Length of the feature vector.</summary>
    int FeatureSize { get; }

    /// <summary>
    /// Identifies the features this backbone computes (network weights, graph rewrite, size, taps): the bottleneck
    /// cache keeps features under it, so features of another backbone are never reused.
    /// </summary>
    string Fingerprint { get; }

    /// <summary>False when the graph only runs one image at a time (a batch of 1 fixed inside it).</summary>
    bool RunsInBatches { get; }

    /// <summary>Canonical description, for reports.</summary>
    string Describe();

    /// <summary>
    /// The feature graph. <paramref name="batchSize"/> null leaves the batch dynamic and outputs [batch, features] for
    /// bulk featurization; 1 gives the [features] vector the ML.NET chain binds to.
    /// </summary>
    byte[] BuildGraph(int? batchSize);
}
