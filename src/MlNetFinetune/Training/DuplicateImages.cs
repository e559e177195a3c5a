namespace MlNetFinetune.Training;

/// <summary>A byte-identical pair: <paramref name="Path"/> has the same content as <paramref name="SameAs"/>.</summary>
public sealed record DuplicatePair(string Path, string Label, string SameAs, string SameAsLabel);

/// <summary>
/// Byte-identical images across the parts of a run. A held-out image that is also a training image measures memory, not
/// generalisation, so such images are left out of the held-out score (unless asked not to); a validation image that is
/// also a training image would flatter the head search, so it is left out of validation.
/// </summary>
/// <param name="HeldOutInTraining">Held-out images whose content is also among the training or validation images.</param>
/// <param name="HeldOutExcluded">Whether those were left out of the held-out evaluation.</param>
/// <param name="ValidationInTraining">Validation images whose content is also a training image (left out of validation).</param>
/// <param name="ConflictingLabels">Contents found under two or more labels.</param>
/// <param name="Examples">Up to <see cref="ExampleLimit"/> pairs, held-out ones first.</param>
public sealed record DuplicateImages(int HeldOutInTraining, bool HeldOutExcluded, int ValidationInTraining, int ConflictingLabels, IReadOnlyList<DuplicatePair> Examples)
{
    /// <summary>How many pairs the report lists.</summary>
    public const int ExampleLimit = 10;

    /// <summary>Whether any duplicate was found.</summary>
    public bool Any => HeldOutInTraining + ValidationInTraining + ConflictingLabels > 0;

    /// <summary>
    /// Finds the duplicates among featurized images and returns the parts to use: validation without copies of
    /// training images, held-out without copies of training or validation images when <paramref name="excludeHeldOut"/>.
    /// </summary>
    internal static (DuplicateImages Found, IReadOnlyList<FeaturizedImage> Validation, IReadOnlyList<FeaturizedImage> HeldOut) Find(
        IReadOnlyList<FeaturizedImage> train, IReadOnlyList<FeaturizedImage> validation, IReadOnlyList<FeaturizedImage> heldOut, bool excludeHeldOut)
    {
        var firstByKey = new Dictionary<string, FeaturizedImage>(StringComparer.Ordinal);
        var labelsByKey = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        var heldOutPairs = new List<DuplicatePair>();
        var validationPairs = new List<DuplicatePair>();

        void Remember(FeaturizedImage image)
        {
            firstByKey.TryAdd(image.Key!, image);
            if (!labelsByKey.TryGetValue(image.Key!, out var labels))
            {
                labelsByKey[image.Key!] = labels = new HashSet<string>(StringComparer.Ordinal);
            }

            labels.Add(image.Image.Label);
        }

        List<FeaturizedImage> KeepUnseen(IReadOnlyList<FeaturizedImage> part, List<DuplicatePair> pairs, bool exclude)
        {
            var kept = new List<FeaturizedImage>();
            foreach (var image in part)
            {
                if (image.Key is { } key && firstByKey.TryGetValue(key, out var first))
                {
                    pairs.Add(new DuplicatePair(image.Image.Path, image.Image.Label, first.Image.Path, first.Image.Label));
                    if (exclude)
                    {
                        continue;
                    }
                }

                kept.Add(image);
            }

            return kept;
        }

        foreach (var image in train.Where(i => i.Key is not null))
        {
            Remember(image);
        }

        var keptValidation = KeepUnseen(validation, validationPairs, exclude: true);
        foreach (var image in validation.Where(i => i.Key is not null))
        {
            Remember(image);
        }

        var keptHeldOut = KeepUnseen(heldOut, heldOutPairs, excludeHeldOut);
        foreach (var image in heldOut.Where(i => i.Key is not null))
        {
            Remember(image);
        }

        var found = new DuplicateImages(
            heldOutPairs.Count,
            excludeHeldOut,
            validationPairs.Count,
            labelsByKey.Values.Count(l => l.Count > 1),
            [.. heldOutPairs.Concat(validationPairs).Take(ExampleLimit)]);
        return (found, keptValidation, keptHeldOut);
    }
}
