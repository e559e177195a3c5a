namespace MlNetFinetune.Pipeline;

/// <summary>The classifier head trained on the bottleneck features: the new output layer.</summary>
/// <param name="L2Regularization">L2 weight of the multinomial logistic regression; null chooses it on the validation split
/// from <see cref="L2Candidates"/>.</param>
/// <param name="MaximumIterations">L-BFGS iteration cap over all epochs.</param>
/// <param name="EpochIterations">L-BFGS iterations per epoch; after each epoch the head is scored on the validation split.</param>
/// <param name="Patience">Epochs without a lower validation log-loss before training stops; the best epoch's weights are kept.</param>
public sealed record HeadOptions(float? L2Regularization = null, int MaximumIterations = 200, int EpochIterations = 20, int Patience = 2)
{
    /// <summary>Strengths tried when <see cref="L2Regularization"/> is null.</summary>
    public static readonly IReadOnlyList<float> L2Candidates = [1f, 10f, 100f, 1000f];
}
