using Microsoft.ML.Data;
using SkiaSharp;

namespace MlNetFinetune.Explanations;

/// <summary>
/// Draws occlusion heat over the image. Red to yellow: hiding the region lowers the class's probability (the model
/// relies on it), the brighter the more; blue: hiding it raises the probability. Heat is scaled to the map's largest
/// magnitude, so each picture's caption should say how large that was. The hottest cell gets a white outline.
/// </summary>
internal static class HeatMapPainter
{
    /// <summary>Grids at least this fine are drawn smoothed.</summary>
    private const int SmoothFromGrid = 8;

    /// <summary>
    /// The square the backbone sees, at <paramref name="side"/> pixels: ML.NET's resize crops the centre square of the
    /// image (isotropic, anchored in the centre), so the heat map's cells line up with it. Small images are enlarged
    /// with hard pixel edges; a blurred 28 px image shows nothing.
    /// </summary>
    public static SKBitmap ModelView(MLImage image, int side)
    {
        var colorType = image.PixelFormat == MLPixelFormat.Rgba32 ? SKColorType.Rgba8888 : SKColorType.Bgra8888;
        using var source = new SKBitmap(new SKImageInfo(image.Width, image.Height, colorType, SKAlphaType.Unpremul));
        System.Runtime.InteropServices.Marshal.Copy(image.Pixels.ToArray(), 0, source.GetPixels(), image.Width * image.Height * 4);
        var square = Math.Min(image.Width, image.Height);
        var crop = SKRect.Create((image.Width - square) / 2f, (image.Height - square) / 2f, square, square);
        var view = new SKBitmap(new SKImageInfo(side, side, SKColorType.Rgba8888, SKAlphaType.Premul));
        using var canvas = new SKCanvas(view);
        canvas.Clear(SKColors.White);
        using var paint = new SKPaint { FilterQuality = side >= 2 * square ? SKFilterQuality.None : SKFilterQuality.High, IsAntialias = false };
        canvas.DrawBitmap(source, crop, SKRect.Create(side, side), paint);
        return view;
    }

    /// <summary>
    /// <paramref name="view"/> with the heat of <paramref name="heat"/> (Grid x Grid cells, row-major) laid over it,
    /// scaled so that <paramref name="scale"/> (a probability drop) is full colour.
    /// </summary>
    public static SKBitmap Overlay(SKBitmap view, float[] heat, int grid, float scale)
    {
        var side = view.Width;
        var overlay = view.Copy();
        using var canvas = new SKCanvas(overlay);

        // Dimmed a little so that the colours read on white images as well as on black ones.
        using (var dim = new SKPaint { Color = new SKColor(0, 0, 0, 70) })
        {
            canvas.DrawRect(SKRect.Create(side, side), dim);
        }

        using var cells = new SKBitmap(new SKImageInfo(grid, grid, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        for (var row = 0; row < grid; row++)
        {
            for (var column = 0; column < grid; column++)
            {
                cells.SetPixel(column, row, Colour(scale > 0 ? heat[(row * grid) + column] / scale : 0));
            }
        }

        // Fine grids are blended between cell centres, so the map reads as regions rather than a chessboard; coarse
        // ones are drawn as blocks, which is all they know.
        using (var paint = new SKPaint { FilterQuality = grid >= SmoothFromGrid ? SKFilterQuality.Medium : SKFilterQuality.None })
        {
            canvas.DrawBitmap(cells, SKRect.Create(side, side), paint);
        }

        var hottest = Array.IndexOf(heat, heat.Max());
        if (heat[hottest] > 0)
        {
            var cell = (float)side / grid;
            using var outline = new SKPaint { Color = SKColors.White, Style = SKPaintStyle.Stroke, StrokeWidth = Math.Max(1.5f, side / 150f), IsAntialias = true };
            canvas.DrawRect(SKRect.Create(hottest % grid * cell, hottest / grid * cell, cell, cell), outline);
        }

        return overlay;
    }

    /// <summary>The scale that makes the larger magnitude of the two maps full colour: side by side, they stay comparable.</summary>
    public static float CommonScale(params float[][] maps) => Math.Max(1e-6f, maps.Max(m => m.Max(Math.Abs)));

    /// <summary>Encodes a picture as PNG.</summary>
    public static byte[] Png(SKBitmap bitmap)
    {
        using var image = SKImage.FromBitmap(bitmap);
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    /// <summary>Transparent at 0; red to yellow with rising opacity for positive heat; blue for negative.</summary>
    private static SKColor Colour(float t)
    {
        t = Math.Clamp(t, -1f, 1f);
        if (t >= 0)
        {
            var green = (byte)(t > 0.5f ? 220 * ((t - 0.5f) * 2) : 0);
            return new SKColor(255, green, 0, (byte)(210 * t));
        }

        return new SKColor(30, 110, 255, (byte)(170 * -t));
    }
}
