namespace MlNetFinetune.Explanations;

/// <summary>An image moved from its class folder into another one, for measuring the label-error search.</summary>
internal sealed record FlippedLabel(string Path, string TrueLabel, string GivenLabel);

/// <summary>Makes known label errors: moves a seeded share of a class-folder tree's images into another class's folder.</summary>
internal static class LabelFlips
{
    /// <summary>Moves round(<paramref name="fraction"/> x images) images of <paramref name="root"/>, each to a class drawn at random among the others.</summary>
    public static IReadOnlyList<FlippedLabel> Flip(string root, double fraction, int seed)
    {
        var classes = Directory.GetDirectories(root).Select(System.IO.Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        var files = classes.SelectMany(c => Directory.GetFiles(System.IO.Path.Combine(root, c!)).Order(StringComparer.Ordinal).Select(f => (File: f, Label: c!))).ToArray();
        var random = new Random(seed);
        random.Shuffle(files);
        var flipped = new List<FlippedLabel>();
        foreach (var (file, label) in files.Take((int)Math.Round(fraction * files.Length)))
        {
            var others = classes.Where(c => c != label).ToList();
            var given = others[random.Next(others.Count)]!;
            var target = System.IO.Path.Combine(root, given, "flipped-" + System.IO.Path.GetFileName(file));
            File.Move(file, target);
            flipped.Add(new FlippedLabel(target, label, given));
        }

        return flipped;
    }
}
