using SkiaSharp;

namespace MlNetFinetune.Images;

/// <summary>
/// Turns pixels stored in an EXIF orientation (as phones store photos: the sensor's rows, plus a tag saying which way
/// is up) into the upright image. SkiaSharp reports the tag (<see cref="SKCodec.EncodedOrigin"/>) but does not apply it.
/// </summary>
internal static class ImageOrientation
{
    /// <summary>Whether the upright image is the stored one turned on its side (width and height swap): EXIF 5 to 8.</summary>
    public static bool SwapsAxes(SKEncodedOrigin origin) => origin >= SKEncodedOrigin.LeftTop;

    /// <summary>
    /// Where stored row <paramref name="y"/> of a <paramref name="width"/> x <paramref name="height"/> image lands in the
    /// upright one: stored pixel x goes to index <c>Start + x * Step</c> (row-major, in pixels).
    /// </summary>
    public static (int Start, int Step) Placement(SKEncodedOrigin origin, int y, int width, int height) => origin switch
    {
        SKEncodedOrigin.TopRight => ((y * width) + width - 1, -1),
        SKEncodedOrigin.BottomRight => (((height - 1 - y) * width) + width - 1, -1),
        SKEncodedOrigin.BottomLeft => ((height - 1 - y) * width, 1),
        SKEncodedOrigin.LeftTop => (y, height),
        SKEncodedOrigin.RightTop => (height - 1 - y, height),
        SKEncodedOrigin.RightBottom => (((width - 1) * height) + height - 1 - y, -height),
        SKEncodedOrigin.LeftBottom => (((width - 1) * height) + y, -height),
        _ => (y * width, 1),
    };

    /// <summary>
    /// Rearranges, in place, <paramref name="pixels"/> stored <paramref name="width"/> x <paramref name="height"/> in
    /// <paramref name="origin"/> into the upright image, following each cycle of the permutation, so that no second
    /// image buffer is needed (only one bit per pixel to mark what has moved).
    /// </summary>
    public static void ApplyInPlace(Span<uint> pixels, SKEncodedOrigin origin, int width, int height)
    {
        if (origin == SKEncodedOrigin.TopLeft)
        {
            return;
        }

        var moved = new ulong[(pixels.Length + 63) / 64];
        for (var first = 0; first < pixels.Length; first++)
        {
            if ((moved[first >> 6] & (1UL << first)) != 0)
            {
                continue;
            }

            var carried = pixels[first];
            var from = first;
            int to;
            do
            {
                var (y, x) = Math.DivRem(from, width);
                var (start, step) = Placement(origin, y, width, height);
                to = start + (x * step);
                (pixels[to], carried) = (carried, pixels[to]);
                moved[to >> 6] |= 1UL << to;
                from = to;
            }
            while (to != first);
        }
    }
}
