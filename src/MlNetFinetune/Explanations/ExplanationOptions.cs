using System.Globalization;

namespace MlNetFinetune.Explanations;

/// <summary>What a training run explains after its evaluation, for report.html, report.json and suspected-label-errors.csv.</summary>
/// <param name="ExplainMistakes">Occlusion heat maps of the gallery's mistakes, for the predicted and the true class.</param>
/// <param name="FindLabelErrors">Out-of-fold search for training images whose label looks wrong: true or false forces it;
/// null (default) runs it when <see cref="IsLabelErrorSearchCheap"/>.</param>
/// <param name="FindNearDuplicates">Look for held-out images that are near copies of training images.</param>
/// <param name="NearDuplicateThreshold">Cosine similarity of standardised bottleneck features at or above which two images are near duplicates.</param>
/// <param name="Folds">Folds of the label-error search: each image is scored by a head trained on the other folds.</param>
/// <param name="FoldIterations">L-BFGS iterations of a fold head at most (the chosen head's epochs when fewer): fold heads
/// rank labels, they need not be the best model, and they are most of the search's cost.</param>
public sealed record ExplanationOptions(
    bool ExplainMistakes = true,
    bool? FindLabelErrors = null,
    bool FindNearDuplicates = true,
    float NearDuplicateThreshold = ExplanationOptions.DefaultNearDuplicateThreshold,
    int Folds = 3,
    int FoldIterations = 40)
{
    /// <summary>See the README's "near duplicates" for how it was measured.</summary>
    public const float DefaultNearDuplicateThreshold = 0.9f;

    /// <summary>
    /// The automatic rule's limit on training images x bottleneck features: a fold head's cost grows with both, and
    /// up to this size the whole search stays a small share of the run (README, "Cost").
    /// </summary>
    public const long LabelErrorSearchLimit = 20_000_000;

    /// <summary>Nothing explained: the run as it was before explanations.</summary>
    public static ExplanationOptions None { get; } = new(ExplainMistakes: false, FindLabelErrors: false, FindNearDuplicates: false);

    /// <summary>
    /// How the gallery's heat maps are measured: a 4 x 4 grid with a 2-cell patch, 10 backbone images per mistake, five
    /// times fewer than the Predictor's 8 x 8 default, so that up to 24 mistakes fit the run's cost budget; on the
    /// quadrant measurement it was as faithful (README, "Explanations").
    /// </summary>
    public OcclusionOptions Occlusion { get; init; } = new(Grid: 4, PatchCells: 2);

    /// <summary>The automatic rule: searched when training images x features is at most <see cref="LabelErrorSearchLimit"/>.</summary>
    public static bool IsLabelErrorSearchCheap(int images, int featureSize) => (long)images * featureSize <= LabelErrorSearchLimit;

    /// <summary>Whether this run searches for label errors.</summary>
    public bool SearchesLabelErrors(int images, int featureSize) => FindLabelErrors ?? IsLabelErrorSearchCheap(images, featureSize);

    /// <summary>Throws <see cref="UserInputException"/> naming the option when a value cannot work.</summary>
    public void Validate()
    {
        if (Folds is < 2 or > 20)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"label-error folds {Folds}: must be 2 to 20"));
        }

        if (FoldIterations < 1)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"label-error fold iterations {FoldIterations}: must be at least 1"));
        }

        if (!(NearDuplicateThreshold is > 0 and <= 1))
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"near-duplicate threshold {NearDuplicateThreshold}: must be above 0 and at most 1"));
        }

        Occlusion.Validate();
    }
}
