using System.Text;
using SkiaSharp;

namespace MlNetFinetune.Explanations;

/// <summary>
/// Text on pictures. The SkiaSharp build the project ships (NoDependencies: no fontconfig) finds fonts only under
/// /usr/share/fonts, and with none there it draws nothing at all: a container without fonts would get PNGs with no
/// labels. So a subset of DejaVu Sans (Latin, Greek, Cyrillic, punctuation; Bitstream Vera licence, see
/// Fonts/LICENSE) is embedded and always used; characters it lacks are drawn with a system font that has them, when
/// there is one, else as U+FFFD.
/// </summary>
internal static class PictureText
{
    private const int ReplacementCharacter = 0xFFFD;

    private static readonly Lazy<SKTypeface> s_embedded = new(() =>
    {
        using var stream = typeof(PictureText).Assembly.GetManifestResourceStream("MlNetFinetune.Explanations.DejaVuSans.ttf")
            ?? throw new InvalidOperationException("the embedded font MlNetFinetune.Explanations.DejaVuSans.ttf is missing from the assembly");
        return SKTypeface.FromStream(stream) ?? throw new InvalidOperationException("the embedded font cannot be read");
    });

    /// <summary>The embedded typeface.</summary>
    public static SKTypeface Typeface => s_embedded.Value;

    /// <summary>Draws <paramref name="text"/> with its baseline at <paramref name="y"/>, cut with an ellipsis to <paramref name="maxWidth"/>; returns the width drawn.</summary>
    public static float Draw(SKCanvas canvas, string text, float x, float y, float size, SKColor color, float maxWidth = float.MaxValue)
    {
        var runs = Runs(Fit(text, size, maxWidth));
        using var paint = new SKPaint { Color = color, TextSize = size, IsAntialias = true, SubpixelText = true };
        var start = x;
        foreach (var (typeface, run) in runs)
        {
            paint.Typeface = typeface;
            canvas.DrawText(run, x, y, paint);
            x += paint.MeasureText(run);
        }

        return x - start;
    }

    /// <summary>Width of <paramref name="text"/> at <paramref name="size"/>.</summary>
    public static float Measure(string text, float size)
    {
        using var paint = new SKPaint { TextSize = size, IsAntialias = true, SubpixelText = true };
        float width = 0;
        foreach (var (typeface, run) in Runs(text))
        {
            paint.Typeface = typeface;
            width += paint.MeasureText(run);
        }

        return width;
    }

    private static string Fit(string text, float size, float maxWidth)
    {
        text = text.ReplaceLineEndings(" ");
        if (Measure(text, size) <= maxWidth)
        {
            return text;
        }

        var runes = text.EnumerateRunes().ToList();
        for (var keep = runes.Count - 1; keep > 0; keep--)
        {
            var cut = string.Concat(runes.Take(keep).Select(r => r.ToString())) + "…";
            if (Measure(cut, size) <= maxWidth)
            {
                return cut;
            }
        }

        return "…";
    }

    /// <summary>Splits text into runs that one typeface can draw.</summary>
    private static List<(SKTypeface Typeface, string Text)> Runs(string text)
    {
        var runs = new List<(SKTypeface, string)>();
        SKTypeface? current = null;
        var run = new StringBuilder();
        foreach (var rune in text.EnumerateRunes())
        {
            var (typeface, drawn) = TypefaceFor(rune);
            if (current is not null && !ReferenceEquals(typeface, current))
            {
                runs.Add((current, run.ToString()));
                run.Clear();
            }

            current = typeface;
            run.Append(drawn.ToString());
        }

        if (current is not null)
        {
            runs.Add((current, run.ToString()));
        }

        return runs;
    }

    private static (SKTypeface Typeface, Rune Drawn) TypefaceFor(Rune rune)
    {
        if (Typeface.GetGlyph(rune.Value) != 0)
        {
            return (Typeface, rune);
        }

        var system = SKFontManager.Default.MatchCharacter(rune.Value);
        return system is not null && system.GetGlyph(rune.Value) != 0
            ? (system, rune)
            : (Typeface, new Rune(ReplacementCharacter));
    }
}
