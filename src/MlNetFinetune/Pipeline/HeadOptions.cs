namespace MlNetFinetune.Pipeline;

/// <summary>The classifier head trained on the bottleneck features: the new output layer.</summary>
/// <param name="L2Regularization">L2 weight of the multinomial logistic regression; null chooses it on the validation split
/// from <see cref="L2Candidates"/>.</param>
/// <param name="MaximumIterations">L-BFGS iteration cap over all epochs.</param>
/// <param name="EpochIterations">L-BFGS iterations per epoch; after each epoch the head is scored on the validation split.</param>
/// <param name="Patience">Epochs without a lower validation log-loss before training stops; the best epoch's weights are kept.</param>
/// <param name="SearchSampleSize">Training rows the search fits on (a per-class sample); larger sets then fit only the winner on all rows.</param>
/// <param name="Search">"softmax": L2 strengths of the softmax head; "auto": also ML.NET's SDCA maximum entropy and LightGBM.</param>
/// <param name="SearchBudget">Wall time for the search; candidates not started by then are skipped and listed as such. Null: 10 minutes.</param>
public sealed record HeadOptions(
    float? L2Regularization = null,
    int MaximumIterations = 400,
    int EpochIterations = 20,
    int Patience = 2,
    int SearchSampleSize = 10_000,
    string Search = HeadOptions.SoftmaxSearch,
    TimeSpan? SearchBudget = null)
{
    public const string SoftmaxSearch = "softmax";
    public const string AutoSearch = "auto";

    /// <summary>Strengths tried when <see cref="L2Regularization"/> is null.</summary>
    public static readonly IReadOnlyList<float> L2Candidates = [1f, 10f, 100f, 1000f];
}
