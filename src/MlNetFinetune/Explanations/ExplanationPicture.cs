using System.Globalization;
using Microsoft.ML.Data;
using SkiaSharp;

namespace MlNetFinetune.Explanations;

/// <summary>
/// One PNG per explained image: the image as the model sees it, the same with the heat of the predicted class over
/// it, the method and its scale in words, and the top classes with bars.
/// </summary>
public static class ExplanationPicture
{
    private const int Panel = 256;
    private const int Margin = 16;
    private const int Width = (3 * Margin) + (2 * Panel);
    private const float TitleSize = 15;
    private const float TextSize = 13;
    private const float RowHeight = 24;

    private static readonly SKColor s_text = new(29, 29, 31);
    private static readonly SKColor s_muted = new(95, 99, 104);
    private static readonly SKColor s_bar = new(52, 110, 200);

    /// <summary>The picture of <paramref name="explanation"/> for an encoded image; throws <see cref="InvalidDataException"/> naming <paramref name="title"/> when it cannot be decoded.</summary>
    public static byte[] Png(byte[] encoded, Explanation explanation, string title, string? label = null)
    {
        using var image = Images.ImageDecoder.Decode(encoded, title);
        return Png(image, explanation, title, label);
    }

    /// <summary>
    /// The picture of <paramref name="explanation"/> for <paramref name="image"/>, as PNG bytes; <paramref name="title"/>
    /// heads it (a file name, say). The heat shown is <paramref name="label"/>'s, the predicted class's by default.
    /// </summary>
    public static byte[] Png(MLImage image, Explanation explanation, string title, string? label = null)
    {
        var map = explanation.Map;
        label ??= explanation.Label;
        var heat = map.Heat[map.IndexOf(label)];
        var scale = HeatMapPainter.CommonScale(heat);
        var rowsTop = Margin + 24 + 20 + Panel + 14 + (2 * 18) + 12;
        var height = (int)(rowsTop + (explanation.Top.Count * RowHeight) + Margin);

        using var picture = new SKBitmap(new SKImageInfo(Width, height, SKColorType.Rgba8888, SKAlphaType.Premul));
        using var canvas = new SKCanvas(picture);
        canvas.Clear(SKColors.White);
        PictureText.Draw(canvas, title, Margin, Margin + TitleSize, TitleSize, s_text, Width - (2 * Margin));

        var panelsTop = Margin + 24 + 20;
        PictureText.Draw(canvas, "input, as the model sees it", Margin, panelsTop - 6, TextSize, s_muted, Panel);
        PictureText.Draw(canvas, $"where it looked for {label}", (2 * Margin) + Panel, panelsTop - 6, TextSize, s_muted, Panel);
        using var view = HeatMapPainter.ModelView(image, Panel);
        using var overlay = HeatMapPainter.Overlay(view, heat, map.Grid, scale);
        canvas.DrawBitmap(view, Margin, panelsTop);
        canvas.DrawBitmap(overlay, (2 * Margin) + Panel, panelsTop);

        var notesTop = panelsTop + Panel + 14 + 13;
        PictureText.Draw(canvas, MethodLine(map.Options), Margin, notesTop, TextSize - 1, s_muted, Width - (2 * Margin));
        PictureText.Draw(canvas, string.Create(CultureInfo.InvariantCulture,
            $"Red to yellow: hiding it lowers p({label}), by up to {heat.Max():0.###} (outlined cell); blue: raises it."),
            Margin, notesTop + 18, TextSize - 1, s_muted, Width - (2 * Margin));

        var labelWidth = 190f;
        var barWidth = Width - (2 * Margin) - labelWidth - 70;
        for (var i = 0; i < explanation.Top.Count; i++)
        {
            var (name, score) = explanation.Top[i];
            var baseline = rowsTop + (i * RowHeight) + 16;
            PictureText.Draw(canvas, name, Margin, baseline, TextSize + 1, s_text, labelWidth - 8);
            using var bar = new SKPaint { Color = i == 0 ? s_bar : s_bar.WithAlpha(120) };
            canvas.DrawRect(SKRect.Create(Margin + labelWidth, baseline - 12, Math.Max(1, barWidth * score), 14), bar);
            PictureText.Draw(canvas, (score * 100).ToString("F1", CultureInfo.InvariantCulture) + "%", Margin + labelWidth + barWidth + 8, baseline, TextSize + 1, s_text);
        }

        return HeatMapPainter.Png(picture);
    }

    /// <summary>Which method and settings made a map, in words.</summary>
    public static string MethodLine(OcclusionOptions options) => string.Create(CultureInfo.InvariantCulture,
        $"Method: occlusion, {options.Grid}×{options.Grid} cells, hidden {options.PatchCells}×{options.PatchCells} cells at a time by {FillName(options.Fill)}.");

    private static string FillName(OcclusionFill fill) => fill switch
    {
        OcclusionFill.Black => "black",
        OcclusionFill.Gray => "grey",
        OcclusionFill.ImageMean => "the image's mean colour",
        _ => "their own mean colour",
    };
}
