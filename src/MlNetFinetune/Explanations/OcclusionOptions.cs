using System.Globalization;

namespace MlNetFinetune.Explanations;

/// <summary>What a hidden region of the image is filled with.</summary>
public enum OcclusionFill
{
    /// <summary>Black (0, 0, 0).</summary>
    Black,

    /// <summary>Mid grey (128, 128, 128).</summary>
    Gray,

    /// <summary>The image's own mean colour: no new brightness or hue enters the picture.</summary>
    ImageMean,

    /// <summary>The mean colour of the hidden region itself: its shapes and texture go, its brightness stays.</summary>
    PatchMean,
}

/// <summary>
/// How occlusion sensitivity is measured: the backbone's input square is cut into <see cref="Grid"/> x
/// <see cref="Grid"/> cells; a patch of <see cref="PatchCells"/> x <see cref="PatchCells"/> cells, filled with
/// <see cref="Fill"/>, slides over it one cell at a time; each cell's heat is the mean drop of the class's probability
/// over the patch positions that hide it.
/// </summary>
/// <param name="Grid">Cells per side of the heat map. The backbone's input side (a multiple of 32) must divide by it.</param>
/// <param name="PatchCells">Side of the hiding patch in cells (the stride is one cell), 1 to <paramref name="Grid"/>.</param>
/// <param name="Fill">What the patch is filled with.</param>
public sealed record OcclusionOptions(int Grid = 8, int PatchCells = 2, OcclusionFill Fill = OcclusionFill.PatchMean)
{
    /// <summary>Patch positions per side: the patch slides one cell at a time.</summary>
    public int Positions => Grid - PatchCells + 1;

    /// <summary>Images run through the model per explanation: every patch position and the unhidden image.</summary>
    public int Variants => (Positions * Positions) + 1;

    /// <summary>Throws <see cref="UserInputException"/> naming the option when a value cannot work.</summary>
    public void Validate()
    {
        if (Grid is < 2 or > 32)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"occlusion grid {Grid}: must be 2 to 32 cells per side"));
        }

        if (PatchCells < 1 || PatchCells > Grid)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"occlusion patch {PatchCells}: must be 1 to {Grid} cells (the grid)"));
        }

        if (!Enum.IsDefined(Fill))
        {
            throw new UserInputException($"occlusion fill {Fill}: use {string.Join(", ", Enum.GetNames<OcclusionFill>())}");
        }
    }

    /// <summary>Throws <see cref="UserInputException"/> when a backbone input of <paramref name="imageSize"/> pixels does not split into the grid.</summary>
    public void CheckFits(int imageSize)
    {
        if (imageSize % Grid != 0)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"occlusion grid {Grid}: the backbone's {imageSize} px input does not split into {Grid} equal cells"));
        }
    }
}
