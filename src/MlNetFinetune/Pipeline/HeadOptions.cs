namespace MlNetFinetune.Pipeline;

/// <summary>The classifier head trained on the bottleneck features: the new output layer.</summary>
/// <param name="L2Regularization">L2 weight of the multinomial logistic regression; null chooses it on the validation split
/// from <see cref="L2Candidates"/>.</param>
/// <param name="MaximumIterations">L-BFGS iteration cap.</param>
public sealed record HeadOptions(float? L2Regularization = null, int MaximumIterations = 200)
{
    /// <summary>Strengths tried when <see cref="L2Regularization"/> is null.</summary>
    public static readonly IReadOnlyList<float> L2Candidates = [0.01f, 0.1f, 1f];
}
