using MlNetFinetune.Explanations;

namespace MlNetFinetune.Tests.Explanations;

public sealed class OcclusionTests
{
    private const int Size = 32;

    /// <summary>A stand-in model: p(class 0) is the mean brightness of the top-left 8x8 pixels; class 1 gets the rest.</summary>
    private static float[][] TopLeftBrightness(float[] batch, int count)
    {
        var plane = Size * Size;
        var result = new float[count][];
        for (var n = 0; n < count; n++)
        {
            double sum = 0;
            for (var channel = 0; channel < 3; channel++)
            {
                for (var y = 0; y < 8; y++)
                {
                    for (var x = 0; x < 8; x++)
                    {
                        sum += batch[(n * 3 * plane) + (channel * plane) + (y * Size) + x];
                    }
                }
            }

            var p = (float)(sum / (3 * 64 * 255));
            result[n] = [p, 1 - p];
        }

        return result;
    }

    private static float[] White() => Enumerable.Repeat(255f, 3 * Size * Size).ToArray();

    [Fact]
    public void VariantsAreTheImageThenOnePerPatchPositionWithThePatchFilled()
    {
        // Given a white image with one black pixel, and a 4x4 grid with a 2-cell (16 px) patch
        var pixels = White();
        pixels[0] = 0;
        var options = new OcclusionOptions(Grid: 4, PatchCells: 2, OcclusionFill.Gray);

        // When the variants are made
        var batch = Occlusion.Variants(pixels, Size, options);

        // Then the first is the image itself and each other has exactly its 16x16 patch grey, in every channel
        var plane = Size * Size;
        Assert.Equal(options.Variants * 3 * plane, batch.Length);
        Assert.Equal(pixels, batch[..(3 * plane)]);
        for (var position = 0; position < options.Positions * options.Positions; position++)
        {
            var (top, left) = (position / options.Positions * 8, position % options.Positions * 8);
            var variant = batch.AsSpan((1 + position) * 3 * plane, 3 * plane);
            for (var i = 0; i < 3 * plane; i++)
            {
                var (y, x) = (i % plane / Size, i % Size);
                var hidden = y >= top && y < top + 16 && x >= left && x < left + 16;
                Assert.Equal(hidden ? 128f : pixels[i], variant[i]);
            }
        }
    }

    [Theory]
    [InlineData(OcclusionFill.Black, 0f)]
    [InlineData(OcclusionFill.ImageMean, 127.5f)]
    [InlineData(OcclusionFill.PatchMean, 255f)]
    public void FillsUseTheirValue(OcclusionFill fill, float expected)
    {
        // Given an image whose left half is black and right half white, and a patch over the right-hand top corner
        var pixels = White();
        for (var i = 0; i < pixels.Length; i++)
        {
            if (i % Size < Size / 2)
            {
                pixels[i] = 0;
            }
        }

        var options = new OcclusionOptions(Grid: 2, PatchCells: 1, fill);

        // When the variants are made
        var batch = Occlusion.Variants(pixels, Size, options);

        // Then the top-right patch (position 1) holds the fill's value
        var topRight = (2 * 3 * Size * Size) + (3 * Size) + 20;
        Assert.Equal(expected, batch[topRight]);
    }

    [Fact]
    public void HeatIsTheMeanDropOverThePatchesHidingEachCellAndPeaksWhereTheEvidenceIs()
    {
        // Given a model that looks only at the top-left 8x8 pixels of a white image
        var options = new OcclusionOptions(Grid: 4, PatchCells: 2, OcclusionFill.Black);

        // When the image is explained
        var map = Occlusion.Explain(White(), Size, ["top-left", "rest"], options, TopLeftBrightness);

        // Then only patches over the top-left cell lower p(top-left), and the top-left cell is the hottest
        Assert.Equal(1f, map.Probabilities[0], 5);
        Assert.Equal((0, 0), map.Hottest(0));
        Assert.Equal(1f, map.Heat[0][0], 5);

        // the cell right of it is hidden by two patch positions, one of which covers the top-left cell: mean drop 0.5
        Assert.Equal(0.5f, map.Heat[0][1], 5);
        Assert.Equal(0.25f, map.Heat[0][5], 5);
        Assert.Equal(0f, map.Heat[0][15], 5);

        // and the other class gains exactly what the first loses
        Assert.Equal(-1f, map.Heat[1][0], 5);
        Assert.Equal(4, map.Rows(0).Length);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(33, 1)]
    [InlineData(8, 0)]
    [InlineData(8, 9)]
    public void ImpossibleOptionsAreRefusedWithTheirName(int grid, int patch)
    {
        var error = Assert.Throws<UserInputException>(() => new OcclusionOptions(grid, patch).Validate());

        Assert.Contains("occlusion", error.Message);
    }

    [Fact]
    public void AGridThatDoesNotSplitTheInputIsRefused()
    {
        var error = Assert.Throws<UserInputException>(() => new OcclusionOptions(Grid: 7).CheckFits(64));

        Assert.Contains("64 px", error.Message);
    }
}
