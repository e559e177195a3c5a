namespace MlNetFinetune.Training;

/// <summary>A snapshot of a featurization in progress.</summary>
/// <param name="Done">Images handled so far (computed, found in the cache or skipped).</param>
/// <param name="Total">Images to handle.</param>
/// <param name="Computed">Images the backbone ran on so far.</param>
/// <param name="ImagesPerSecond">Backbone throughput of this run so far.</param>
/// <param name="Remaining">Estimated time left.</param>
public sealed record FeaturizationProgress(int Done, int Total, int Computed, double ImagesPerSecond, TimeSpan Remaining);
