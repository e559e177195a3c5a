namespace MlNetFinetune.Explanations;

/// <summary>
/// Where the model looked in one image, by occlusion sensitivity: for every class, a <see cref="Grid"/> x
/// <see cref="Grid"/> map (row-major, top row first) of how much hiding each cell lowers that class's probability.
/// Positive heat: the region speaks for the class; negative: hiding it makes the class more likely.
/// </summary>
/// <param name="Options">Grid, patch and fill the map was measured with.</param>
/// <param name="Classes">Class names in score order.</param>
/// <param name="Probabilities">The model's probabilities for the unhidden image, in <paramref name="Classes"/> order.</param>
/// <param name="Heat">Per class (in <paramref name="Classes"/> order), the Grid x Grid cell heat in probability units.</param>
public sealed record OcclusionMap(OcclusionOptions Options, IReadOnlyList<string> Classes, float[] Probabilities, float[][] Heat)
{
    /// <summary>The name of the method, for captions and JSON: which technique a picture shows.</summary>
    public const string Method = "occlusion";

    /// <summary>Cells per side.</summary>
    public int Grid => Options.Grid;

    /// <summary>Index of the most probable class.</summary>
    public int PredictedIndex => Array.IndexOf(Probabilities, Probabilities.Max());

    /// <summary>Index of <paramref name="label"/> among <see cref="Classes"/>; throws <see cref="ArgumentException"/> for an unknown class.</summary>
    public int IndexOf(string label)
    {
        for (var i = 0; i < Classes.Count; i++)
        {
            if (string.Equals(Classes[i], label, StringComparison.Ordinal))
            {
                return i;
            }
        }

        throw new ArgumentException($"'{label}' is not one of the model's classes", nameof(label));
    }

    /// <summary>The heat of class <paramref name="classIndex"/> as rows of cells, top row first.</summary>
    public float[][] Rows(int classIndex) =>
        [.. Enumerable.Range(0, Grid).Select(row => Heat[classIndex].AsSpan(row * Grid, Grid).ToArray())];

    /// <summary>Row and column of the hottest cell of class <paramref name="classIndex"/> (the first in reading order on ties).</summary>
    public (int Row, int Column) Hottest(int classIndex)
    {
        var heat = Heat[classIndex];
        var best = 0;
        for (var i = 1; i < heat.Length; i++)
        {
            if (heat[i] > heat[best])
            {
                best = i;
            }
        }

        return (best / Grid, best % Grid);
    }
}
