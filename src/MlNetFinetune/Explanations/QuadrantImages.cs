using SkiaSharp;

namespace MlNetFinetune.Explanations;

/// <summary>What fills the canvas around the pasted item.</summary>
internal enum QuadrantBackground
{
    /// <summary>Black, like Fashion-MNIST's own background.</summary>
    Black,

    /// <summary>Grey noise (uniform 0 to 95 per pixel, seeded): no fill value is neutral on it by accident.</summary>
    Noise,
}

/// <summary>An image of the faithfulness data set: where it is, its class, and the quadrant its item was pasted into.</summary>
/// <param name="Path">The image file.</param>
/// <param name="Label">Its class.</param>
/// <param name="Quadrant">0 top left, 1 top right, 2 bottom left, 3 bottom right.</param>
internal sealed record QuadrantImage(string Path, string Label, int Quadrant);

/// <summary>
/// The data set that checks heat maps against ground truth: each image of a class folder pasted into one quadrant
/// (seeded at random) of a canvas twice its side. A faithful map is hottest in that quadrant, because nothing else
/// in the picture belongs to the class.
/// </summary>
internal static class QuadrantImages
{
    /// <summary>
    /// Writes <paramref name="perClass"/> images of each class of <paramref name="sourceFolder"/> (ordinal order, after
    /// the first <paramref name="skip"/>) under <paramref name="targetFolder"/>/&lt;class&gt;/.
    /// </summary>
    public static IReadOnlyList<QuadrantImage> Write(string sourceFolder, string targetFolder, int perClass, int seed, QuadrantBackground background, int skip = 0)
    {
        var random = new Random(seed);
        var written = new List<QuadrantImage>();
        foreach (var classFolder in Directory.GetDirectories(sourceFolder).Order(StringComparer.Ordinal))
        {
            var label = System.IO.Path.GetFileName(classFolder);
            var target = Directory.CreateDirectory(System.IO.Path.Combine(targetFolder, label)).FullName;
            foreach (var file in Directory.GetFiles(classFolder, "*.png").Order(StringComparer.Ordinal).Skip(skip).Take(perClass))
            {
                using var item = SKBitmap.Decode(file) ?? throw new InvalidDataException($"{file}: not a decodable image");
                var quadrant = random.Next(4);
                var path = System.IO.Path.Combine(target, $"{System.IO.Path.GetFileNameWithoutExtension(file)}-q{quadrant}.png");
                File.WriteAllBytes(path, Canvas(item, quadrant, background, random));
                written.Add(new QuadrantImage(path, label, quadrant));
            }
        }

        return written;
    }

    /// <summary>The quadrant a grid cell lies in, for a grid of even side.</summary>
    public static int QuadrantOf(int row, int column, int grid) => ((row >= grid / 2) ? 2 : 0) + ((column >= grid / 2) ? 1 : 0);

    private static byte[] Canvas(SKBitmap item, int quadrant, QuadrantBackground background, Random random)
    {
        var (width, height) = (item.Width * 2, item.Height * 2);
        using var canvasBitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        for (var y = 0; y < height; y++)
        {
            for (var x = 0; x < width; x++)
            {
                var value = background == QuadrantBackground.Noise ? (byte)random.Next(96) : (byte)0;
                canvasBitmap.SetPixel(x, y, new SKColor(value, value, value));
            }
        }

        using (var canvas = new SKCanvas(canvasBitmap))
        {
            canvas.DrawBitmap(item, quadrant % 2 * item.Width, quadrant / 2 * item.Height);
        }

        using var image = SKImage.FromBitmap(canvasBitmap);
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }
}
