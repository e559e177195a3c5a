using System.Globalization;
using MlNetFinetune.Images;
using SkiaSharp;

namespace MlNetFinetune.BadInputCorpus;

/// <summary>
/// Decodes one file and reports the process's peak resident memory during the decode alone: the peak is reset
/// (Linux: "5" into /proc/self/clear_refs) after a full collection, just before decoding.
/// </summary>
internal static class DecodeMeasurement
{
    public static string Run(string path)
    {
        WarmUp();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        File.WriteAllText("/proc/self/clear_refs", "5");
        var before = Status("VmRSS");
        string outcome;
        try
        {
            using var image = ImageDecoder.DecodeFile(path);
            outcome = string.Create(CultureInfo.InvariantCulture, $"decoded {image.Width}x{image.Height}");
        }
        catch (InvalidImageException e)
        {
            outcome = $"{e.Problem}: {e.Detail}";
        }

        var peak = Status("VmHWM");
        return string.Create(CultureInfo.InvariantCulture,
            $"{path}: {outcome}; peak RSS {peak / 1024.0:F0} MB, {(peak - before) / 1024.0:F0} MB above the {before / 1024.0:F0} MB before decoding");
    }

    /// <summary>Decodes a tiny image once, so that loading SkiaSharp's native library and compiling the decoder do not count as the first file's memory.</summary>
    private static void WarmUp()
    {
        using var pixel = new SKBitmap(1, 1);
        ImageDecoder.Decode(HostileImages.Encode(pixel, SKEncodedImageFormat.Png), "warm-up").Dispose();
    }

    /// <summary>A /proc/self/status field in kB.</summary>
    private static long Status(string field)
    {
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith(field + ":", StringComparison.Ordinal));
        return long.Parse(line[(field.Length + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
    }
}
