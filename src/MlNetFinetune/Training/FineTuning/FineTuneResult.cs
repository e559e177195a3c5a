using Onnx;

namespace MlNetFinetune.Training.FineTuning;

/// <summary>One labelled image as the backbone takes it: planar RGB values 0..255 at the backbone's input size
/// (what <see cref="Pipeline.ImageClassificationChain.ImageToPixels(Microsoft.ML.MLContext, int)"/> gives), and a class index from 0.</summary>
public readonly record struct LabelledPixels(float[] Pixels, int Label);

/// <summary>What a finished fine-tuning epoch measured.</summary>
/// <param name="Epoch">1-based; 0 is the head trained alone on the pretrained network (<see cref="FineTuneOptions.HeadEpochs"/>).</param>
/// <param name="TrainLoss">Mean cross-entropy over the epoch's training steps (augmented images, weights changing along the way).</param>
/// <param name="TrainAccuracy">Share of the epoch's training images classified right at their step, before its update (augmented, weights changing).</param>
/// <param name="ValidationLoss">Mean cross-entropy on the validation images after the epoch; NaN without validation images.</param>
/// <param name="ValidationAccuracy">Share of validation images classified right after the epoch; NaN without validation images.</param>
/// <param name="LearningRate">The backbone's learning rate at the epoch's last step (the head's is that times the multiple); for epoch 0 the head's starting rate.</param>
/// <param name="ImagesPerSecond">Training images per second of the epoch's training steps.</param>
/// <param name="Seconds">Wall time of the epoch, validation included.</param>
public sealed record FineTuneEpoch(int Epoch, double TrainLoss, double TrainAccuracy, double ValidationLoss, double ValidationAccuracy, double LearningRate, double ImagesPerSecond, double Seconds);

/// <summary>Where a fine-tuning run is (for a progress display).</summary>
/// <param name="Phase">"caching" (the frozen part runs over the images), "training" or "validating".</param>
/// <param name="Epoch">1-based epoch; 0 while caching.</param>
/// <param name="Done">Images done in this phase.</param>
/// <param name="Total">Images in this phase; 0 when not known ahead (caching images decoded on the fly).</param>
/// <param name="ImagesPerSecond">Speed of this phase so far.</param>
public sealed record FineTuneProgress(string Phase, int Epoch, int Done, int Total, double ImagesPerSecond);

/// <summary>The trained softmax head: logits = features · Weights + Bias, features as the backbone graph outputs them for <see cref="Features"/>.</summary>
/// <param name="Features">The taps it reads, as <see cref="Backbones.BackboneOptions.Features"/> writes them.</param>
/// <param name="FeatureSize">Length of the feature vector it reads.</param>
/// <param name="Classes">Number of classes it scores.</param>
/// <param name="Weights">[FeatureSize, Classes], row-major.</param>
/// <param name="Bias">[Classes].</param>
public sealed record FineTunedHead(string Features, int FeatureSize, int Classes, float[] Weights, float[] Bias)
{
    /// <summary>Class probabilities (softmax of the logits) of one feature vector.</summary>
    public float[] Probabilities(ReadOnlySpan<float> features)
    {
        var logits = new double[Classes];
        for (var k = 0; k < Classes; k++)
        {
            double sum = Bias[k];
            for (var f = 0; f < FeatureSize; f++)
            {
                sum += features[f] * Weights[(f * Classes) + k];
            }

            logits[k] = sum;
        }

        var max = logits.Max();
        var exp = logits.Select(l => Math.Exp(l - max)).ToArray();
        var total = exp.Sum();
        return [.. exp.Select(e => (float)(e / total))];
    }
}

/// <summary>The outcome of <see cref="FineTuner.Run"/>: the best epoch's network and head, and the history.</summary>
/// <param name="Network">The fine-tuned network: the pretrained one with its batch norms folded and the trained stages'
/// weights replaced, same tensor names, so <see cref="Backbones.ResNet18Backbone.BuildGraph(Backbones.BackboneOptions, int?, ModelProto?)"/> wraps it into the feature graph.</param>
/// <param name="Head">The head trained with it, on the backbone options' taps.</param>
/// <param name="History">Every finished epoch, in order.</param>
/// <param name="BestEpoch">The epoch whose weights <see cref="Network"/> and <see cref="Head"/> hold (lowest validation loss; the last without
/// validation images); 0 is the head-only epoch (the network then is the pretrained one), <see cref="FineTuner.NoEpoch"/> when no epoch
/// had a finite validation loss (the pretrained network and the initial head).</param>
/// <param name="StopReason">Why training ended: "completed", "early stopping (patience N)" or "cancelled".</param>
/// <param name="CacheBytes">Memory held by the cached maps of the frozen part.</param>
/// <param name="CacheSeconds">Time this run spent running the frozen part over the training and validation images (a resumed run rebuilds the cache too).</param>
public sealed record FineTuneResult(
    ModelProto Network,
    FineTunedHead Head,
    IReadOnlyList<FineTuneEpoch> History,
    int BestEpoch,
    string StopReason,
    long CacheBytes,
    double CacheSeconds)
{
    /// <summary>True when the run was cancelled and returned the best epoch finished before that.</summary>
    public bool Cancelled => StopReason == FineTuner.Cancelled;
}
