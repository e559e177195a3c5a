using SkiaSharp;

namespace MlNetFinetune.Explanations;

/// <summary>The edits that make a near copy of an image, as happens when a data set is collected twice.</summary>
internal enum NearCopyEdit
{
    /// <summary>Saved again as JPEG at quality 85.</summary>
    Jpeg,

    /// <summary>Stored at twice its size (PNG), as a copy from another source often is.</summary>
    Resized,

    /// <summary>Moved one pixel right and one down; the uncovered edge is black.</summary>
    Shift,

    /// <summary>Brighter by 12 levels (of 255).</summary>
    Brighter,

    /// <summary>Enlarged by 5% and cropped back to its size around the centre.</summary>
    Zoom,

    /// <summary>JPEG, shift, brighter and zoom at once (not resized).</summary>
    All,
}

/// <summary>Near copies of images for measuring the near-duplicate search: what a threshold must catch.</summary>
internal static class NearCopies
{
    /// <summary>The edited image, encoded (PNG, or JPEG for the edits that re-encode).</summary>
    public static byte[] Make(byte[] encoded, NearCopyEdit edit)
    {
        using var source = SKBitmap.Decode(encoded) ?? throw new InvalidDataException("not a decodable image");
        var factor = edit == NearCopyEdit.Resized ? 2 : 1;
        using var edited = new SKBitmap(new SKImageInfo(source.Width * factor, source.Height * factor, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using (var canvas = new SKCanvas(edited))
        {
            canvas.Clear(SKColors.Black);
            var (dx, dy) = edit is NearCopyEdit.Shift or NearCopyEdit.All ? (1, 1) : (0, 0);
            var zoom = edit is NearCopyEdit.Zoom or NearCopyEdit.All ? 1.05f : 1f;
            var (w, h) = (edited.Width * zoom, edited.Height * zoom);
            using var paint = new SKPaint { FilterQuality = SKFilterQuality.Medium };
            canvas.DrawBitmap(source, SKRect.Create(((edited.Width - w) / 2) + dx, ((edited.Height - h) / 2) + dy, w, h), paint);
        }

        if (edit is NearCopyEdit.Brighter or NearCopyEdit.All)
        {
            for (var y = 0; y < edited.Height; y++)
            {
                for (var x = 0; x < edited.Width; x++)
                {
                    var c = edited.GetPixel(x, y);
                    edited.SetPixel(x, y, new SKColor(Brighter(c.Red), Brighter(c.Green), Brighter(c.Blue)));
                }
            }
        }

        using var image = SKImage.FromBitmap(edited);
        var jpeg = edit is NearCopyEdit.Jpeg or NearCopyEdit.All;
        using var data = image.Encode(jpeg ? SKEncodedImageFormat.Jpeg : SKEncodedImageFormat.Png, jpeg ? 85 : 100);
        return data.ToArray();
    }

    private static byte Brighter(byte value) => (byte)Math.Min(255, value + 12);
}
