namespace MlNetFinetune.Data;

/// <summary>Seeded stratified splitting: every class keeps its share in each part.</summary>
internal static class StratifiedSplit
{
    /// <summary>
    /// Splits <paramref name="images"/> into a part holding about <paramref name="fraction"/> of each class and the rest.
    /// Each class with at least two images puts at least one image on each side.
    /// </summary>
    public static (IReadOnlyList<ImageRecord> Remainder, IReadOnlyList<ImageRecord> Part) Split(
        IReadOnlyList<ImageRecord> images, double fraction, int seed)
    {
        if (fraction is <= 0 or >= 1)
        {
            throw new UserInputException($"split fraction {fraction} must be between 0 and 1 (exclusive)");
        }

        var random = new Random(seed);
        var rest = new List<ImageRecord>();
        var part = new List<ImageRecord>();
        foreach (var group in images.GroupBy(i => i.Label).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var members = group.OrderBy(i => i.Path, StringComparer.Ordinal).ToArray();
            random.Shuffle(members);
            var take = (int)Math.Round(members.Length * fraction);
            if (members.Length >= 2)
            {
                take = Math.Clamp(take, 1, members.Length - 1);
            }

            part.AddRange(members.Take(take));
            rest.AddRange(members.Skip(take));
        }

        return (rest, part);
    }
}
