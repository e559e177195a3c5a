using System.Globalization;

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
    /// <summary>Search the L2 strength of the softmax head only.</summary>
    public const string SoftmaxSearch = "softmax";

    /// <summary>Also try ML.NET's SDCA maximum entropy and LightGBM heads.</summary>
    public const string AutoSearch = "auto";

    /// <summary>Throws <see cref="UserInputException"/> naming the option when a value cannot work.</summary>
    public void Validate()
    {
        if (L2Regularization is float l2 && !(l2 >= 0 && float.IsFinite(l2)))
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"--l2 {l2}: must be a finite number of 0 or more"));
        }

        if (Search is not (SoftmaxSearch or AutoSearch))
        {
            throw new UserInputException($"--head {Search}: use {SoftmaxSearch} or {AutoSearch}");
        }

        if (SearchBudget is TimeSpan budget && budget <= TimeSpan.Zero)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"--search-minutes {budget.TotalMinutes}: must be more than 0"));
        }

        if (MaximumIterations < 1 || EpochIterations < 1 || Patience < 0 || SearchSampleSize < 1)
        {
            throw new UserInputException("head options: iterations, epoch size and search sample must be at least 1, patience at least 0");
        }
    }

    /// <summary>Strengths tried when <see cref="L2Regularization"/> is null.</summary>
    public static readonly IReadOnlyList<float> L2Candidates = [1f, 10f, 100f, 1000f];
}
