using System.Globalization;
using System.Net;
using System.Text;
using SkiaSharp;

namespace MlNetFinetune.Evaluation;

/// <summary>
/// Writes report.html: the evaluation as one page for people, with the confusion matrix as a heat map, per-class
/// bars and the most confident mistakes as thumbnails. Everything is inside the file (inline SVG, images as data
/// URIs), so it can be mailed or archived on its own. It is also well-formed XML, so programs can read it too.
/// </summary>
internal static class HtmlReportWriter
{
    public const string FileName = "report.html";

    /// <summary>How many mistakes the gallery shows.</summary>
    public const int GalleryLimit = 24;

    /// <summary>Thumbnails are shown within a square of this many CSS pixels.</summary>
    internal const int DisplaySide = 112;

    /// <summary>Bigger images are downscaled to this side before embedding, so photos do not bloat the page.</summary>
    private const int StoredSide = 2 * DisplaySide;

    /// <summary>Small files are embedded as they are: exact pixels, and no bigger than a re-encoding would be.</summary>
    private const int MaximumOriginalBytes = 64 * 1024;

    private static readonly Dictionary<string, string> s_mimeTypes = new(StringComparer.OrdinalIgnoreCase)
    {
        [".png"] = "image/png",
        [".jpg"] = "image/jpeg",
        [".jpeg"] = "image/jpeg",
        [".bmp"] = "image/bmp",
        [".gif"] = "image/gif",
        [".webp"] = "image/webp",
    };

    private const string Style = """
        :root { color-scheme: light; }
        body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1d1d1f; background: #ffffff; margin: 0 auto; padding: 24px 32px 48px; max-width: 1200px; line-height: 1.45; }
        h1 { font-size: 26px; margin: 0 0 4px; }
        h2 { font-size: 19px; margin: 36px 0 6px; padding-bottom: 4px; border-bottom: 1px solid #e3e3e3; }
        p.lead, p.note { color: #5f6368; margin: 4px 0 12px; }
        .cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 12px; margin-top: 18px; }
        .card { border: 1px solid #e3e3e3; border-radius: 8px; padding: 10px 14px; background: #fafbfc; }
        .card .name { font-size: 12px; text-transform: uppercase; letter-spacing: 0.04em; color: #5f6368; }
        .card .value { font-size: 24px; font-weight: 600; font-variant-numeric: tabular-nums; }
        .card .value.text { font-size: 15px; font-weight: 500; overflow-wrap: anywhere; }
        .card .detail { font-size: 13px; color: #5f6368; }
        .plot { overflow-x: auto; }
        svg { display: block; max-width: 100%; height: auto; }
        table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
        th, td { padding: 5px 14px; border-bottom: 1px solid #e3e3e3; text-align: right; }
        th:first-child, td:first-child { text-align: left; }
        tr.chosen { background: #eaf3ea; font-weight: 600; }
        .gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 12px; }
        figure.mistake, figure.suspect, figure.pair { margin: 0; border: 1px solid #e3e3e3; border-radius: 8px; padding: 10px; background: #fafbfc; }
        .thumb { height: 112px; display: flex; align-items: center; justify-content: center; background: #ffffff; border-radius: 4px; margin-bottom: 6px; }
        .thumb img.pixelated { image-rendering: pixelated; }
        .thumb.absent { color: #b3261e; font-size: 13px; text-align: center; padding: 0 8px; background: #fdeeee; }
        figcaption { font-size: 13px; overflow-wrap: anywhere; }
        figcaption .muted { color: #6b6f76; }
        figcaption .file { color: #6b6f76; font-size: 12px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
        figcaption .predicted { color: #b3261e; }
        figcaption .confidence { font-weight: 600; font-variant-numeric: tabular-nums; }
        ul.skipped { font-size: 13px; }
        .gallery.explained { grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); }
        .views { display: flex; gap: 6px; margin-bottom: 6px; }
        .views .view { flex: 1; text-align: center; font-size: 12px; color: #5f6368; overflow-wrap: anywhere; }
        .views .thumb { margin-bottom: 2px; }
        code { font-size: 12px; }
        """;

    /// <summary>Writes report.html into <paramref name="folder"/>, atomically.</summary>
    /// <param name="report">The evaluation.</param>
    /// <param name="predictions">Every held-out prediction; the gallery takes the most confident mistakes.</param>
    /// <param name="folder">The run's output folder.</param>
    /// <param name="explanations">Heat maps of the gallery's mistakes; the suspects and near duplicates come from the report.</param>
    public static void Write(EvaluationReport report, IReadOnlyList<HeldOutPrediction> predictions, string folder, Explanations.RunExplanations? explanations = null)
    {
        Directory.CreateDirectory(folder);
        AtomicFile.WriteAllText(Path.Combine(folder, FileName), ToHtml(report, predictions, explanations));
    }

    public static string ToHtml(EvaluationReport report, IReadOnlyList<HeldOutPrediction> predictions, Explanations.RunExplanations? explanations = null)
    {
        var t = report.Training;
        var correct = Enumerable.Range(0, report.ClassNames.Count).Sum(i => report.ConfusionMatrix[i][i]);
        var html = new StringBuilder();
        html.Append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n")
            .Append("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n")
            .Append(Invariant($"<title>Held-out evaluation: {Percent(report.MicroAccuracy)} accuracy</title>\n"))
            .Append("<style>\n").Append(Style).Append("\n</style>\n</head>\n<body>\n");

        html.Append("<header>\n<h1>Held-out evaluation</h1>\n")
            .Append(Invariant($"<p class=\"lead\">{report.ClassNames.Count} classes, {t.HeldOutImages} held-out images: {Encode(t.HeldOutSource)}.</p>\n"))
            .Append("</header>\n");

        html.Append("<section id=\"summary\" class=\"cards\">\n");
        Card(html, "accuracy (micro)", Percent(report.MicroAccuracy), Invariant($"{correct} of {t.HeldOutImages} held-out images right"));
        Card(html, "accuracy (macro)", Percent(report.MacroAccuracy), "mean recall of the classes");
        Card(html, "log-loss", report.LogLoss.ToString("F4", CultureInfo.InvariantCulture), "mean −ln p(true class)");
        Card(html, "images", t.HeldOutImages.ToString(CultureInfo.InvariantCulture), Invariant($"held-out; {t.TrainImages} train, {t.ValidationImages} validation"));
        Card(html, "backbone", t.Backbone, Invariant($"{t.FeatureSize} bottleneck features"), breakAfter: ';');
        Card(html, "L2 of the head", t.L2Regularization.ToString(CultureInfo.InvariantCulture),
            t.HeadCandidates.Count > 0 ? "chosen on the validation split" : "given, not chosen");
        Card(html, "skipped files", report.SkippedFiles.Count.ToString(CultureInfo.InvariantCulture),
            report.SkippedFiles.Count == 0 ? "every image was read" : "listed at the end");
        html.Append("</section>\n");

        html.Append("<section id=\"confusion-matrix\">\n<h2>Confusion matrix</h2>\n")
            .Append("<p class=\"note\">Rows: true class; columns: predicted class. Blue cells are right, red ones mistakes; the darker, the larger the share of the true class. Each cell shows its number of images.</p>\n")
            .Append("<div class=\"plot\">").Append(ReportPlots.ConfusionHeatmap(report.ClassNames, report.ConfusionMatrix)).Append("</div>\n</section>\n");

        html.Append("<section id=\"per-class\">\n<h2>Precision, recall and F1 per class</h2>\n")
            .Append("<p class=\"note\">Precision: share of the images predicted as the class that are of it. Recall: share of the class's images found. F1: their harmonic mean.</p>\n")
            .Append("<div class=\"plot\">").Append(ReportPlots.MetricBars(report.Classes)).Append("</div>\n</section>\n");

        AppendHeadCandidates(html, t);
        AppendGallery(html, report, predictions, explanations?.Gallery);
        Explanations.ExplanationSections.AppendLabelErrors(html, report.LabelErrors);
        Explanations.ExplanationSections.AppendNearDuplicates(html, report.NearDuplicates);

        var featurized = t.FeaturesComputed == 0
            ? Invariant($"All {t.FeaturesFromCache} images' features came from the bottleneck cache")
            : Invariant($"{t.FeaturesComputed} images through the backbone ({t.FeaturizationImagesPerSecond:F1} images/s, {t.FeaturizationSeconds:F1} s), {t.FeaturesFromCache} from the bottleneck cache");
        html.Append("<section id=\"training\">\n<h2>Training</h2>\n")
            .Append(Invariant($"<p>{featurized}; head trained in {t.HeadTrainingSeconds:F1} s; seed {t.Seed}.</p>\n"));
        if (report.SkippedFiles.Count > 0)
        {
            html.Append("<h3>Skipped files</h3>\n<ul class=\"skipped\">\n");
            foreach (var s in report.SkippedFiles)
            {
                html.Append("<li><code>").Append(Encode(s.Path)).Append("</code>: ").Append(Encode(s.Reason)).Append("</li>\n");
            }

            html.Append("</ul>\n");
        }

        html.Append("</section>\n</body>\n</html>\n");
        return html.ToString();
    }

    /// <summary>The wrong predictions, most confident first: the mistakes the model was surest of are the most telling.</summary>
    public static IReadOnlyList<HeldOutPrediction> MostConfidentMistakes(IEnumerable<HeldOutPrediction> predictions, int limit = GalleryLimit) =>
        [.. predictions
            .Where(p => !string.Equals(p.TrueLabel, p.PredictedLabel, StringComparison.Ordinal))
            .OrderByDescending(p => p.Scores.Max())
            .ThenBy(p => p.Path, StringComparer.Ordinal)
            .Take(limit)];

    private static void AppendHeadCandidates(StringBuilder html, TrainingSummary t)
    {
        html.Append("<section id=\"head-candidates\">\n<h2>Head candidates</h2>\n");
        if (t.HeadCandidates.Count == 0)
        {
            html.Append(Invariant($"<p class=\"note\">The L2 strength was given ({t.L2Regularization}), so no candidates were compared.</p>\n</section>\n"));
            return;
        }

        html.Append("<p class=\"note\">Each setting was trained on the training split with early stopping on the validation split (the best epoch's weights kept) and scored there; the chosen one is highlighted.</p>\n")
            .Append("<table>\n<thead><tr><th>head</th><th>L2</th><th>validation accuracy</th><th>validation log-loss</th><th>best epoch / epochs run</th><th></th></tr></thead>\n<tbody>\n");
        foreach (var c in t.HeadCandidates)
        {
            var chosen = t.IsChosen(c);
            html.Append(chosen ? "<tr class=\"chosen\">" : "<tr>")
                .Append(Invariant($"<td>{Encode(c.Head)}</td><td>{c.L2Regularization}</td><td>{c.ValidationAccuracy:F4}</td><td>{c.ValidationLogLoss:F4}</td><td>{c.BestEpoch} / {c.EpochsRun}</td>"))
                .Append(chosen ? "<td>chosen</td>" : "<td></td>")
                .Append("</tr>\n");
        }

        html.Append("</tbody>\n</table>\n</section>\n");
    }

    private static void AppendGallery(StringBuilder html, EvaluationReport report, IReadOnlyList<HeldOutPrediction> predictions, IReadOnlyDictionary<string, Explanations.GalleryExplanation>? heatMaps)
    {
        var wrong = predictions.Count(p => !string.Equals(p.TrueLabel, p.PredictedLabel, StringComparison.Ordinal));
        var mistakes = MostConfidentMistakes(predictions);
        html.Append("<section id=\"mistakes\">\n<h2>Most confident mistakes</h2>\n");
        if (mistakes.Count == 0)
        {
            html.Append("<p class=\"note\">No held-out image was misclassified.</p>\n</section>\n");
            return;
        }

        var shown = mistakes.Count == wrong
            ? Invariant($"All {wrong} wrong predictions")
            : Invariant($"The {mistakes.Count} wrong predictions (of {wrong}) the model was surest of");
        html.Append(Invariant($"<p class=\"note\">{shown}, most confident first. Confidence is the probability the model gave the predicted class; p(true) the one it gave the right class.</p>\n"));
        var explained = heatMaps is { Count: > 0 };
        if (explained)
        {
            html.Append(Invariant($"<p class=\"note\">Beside each image: where the model looked for the predicted and for the true class. {Encode(Explanations.ExplanationPicture.MethodLine(heatMaps!.Values.First().Map.Options))} Red to yellow: hiding the region lowers that class's probability (the outlined cell the most); blue: hiding it raises it. Both maps of an image share one colour scale, given under them.</p>\n"));
        }

        html.Append(explained ? "<div class=\"gallery explained\">\n" : "<div class=\"gallery\">\n");
        var classIndex = report.ClassNames.Select((name, i) => (name, i)).ToDictionary(p => p.name, p => p.i, StringComparer.Ordinal);
        foreach (var p in mistakes)
        {
            var confidence = p.Scores.Max();
            var trueScore = classIndex.TryGetValue(p.TrueLabel, out var index) && index < p.Scores.Length ? p.Scores[index] : 0f;
            html.Append(Invariant($"<figure class=\"mistake\" data-path=\"{Encode(p.Path)}\" data-true=\"{Encode(p.TrueLabel)}\" data-predicted=\"{Encode(p.PredictedLabel)}\" data-confidence=\"{confidence:R}\">\n"));
            if (heatMaps is not null && heatMaps.TryGetValue(p.Path, out var heat))
            {
                html.Append("<div class=\"views\">\n<div class=\"view\">");
                AppendThumbnail(html, p.Path, $"{p.TrueLabel} predicted as {p.PredictedLabel}");
                html.Append("image</div>\n");
                Explanations.ExplanationSections.AppendOverlay(html, heat.PredictedOverlay, $"looked for {p.PredictedLabel}", DisplaySide);
                Explanations.ExplanationSections.AppendOverlay(html, heat.TrueOverlay, $"looked for {p.TrueLabel}", DisplaySide);
                html.Append("</div>\n").Append(Invariant($"<div class=\"muted\" style=\"font-size:12px\">full colour = a drop of {heat.Scale:0.###} in probability</div>\n"));
            }
            else
            {
                AppendThumbnail(html, p.Path, $"{p.TrueLabel} predicted as {p.PredictedLabel}");
            }

            html.Append("<figcaption>\n")
                .Append("<div class=\"file\" title=\"").Append(Encode(p.Path)).Append("\">").Append(Encode(Path.GetFileName(p.Path))).Append("</div>\n")
                .Append("<div>true <b>").Append(Encode(p.TrueLabel)).Append("</b></div>\n")
                .Append("<div>predicted <b class=\"predicted\">").Append(Encode(p.PredictedLabel)).Append("</b></div>\n")
                .Append(Invariant($"<div>confidence <span class=\"confidence\">{Percent(confidence)}</span></div>\n"))
                .Append(Invariant($"<div class=\"muted\">p(true) {Percent(trueScore)}</div>\n"))
                .Append("</figcaption>\n</figure>\n");
        }

        html.Append("</div>\n</section>\n");
    }

    /// <summary>The image at <paramref name="path"/> as an embedded thumbnail, or a note saying why it cannot be shown.</summary>
    internal static void AppendThumbnail(StringBuilder html, string path, string alt)
    {
        if (!File.Exists(path))
        {
            html.Append("<div class=\"thumb absent\">image file is gone</div>\n");
            return;
        }

        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            html.Append("<div class=\"thumb absent\">image file cannot be read</div>\n");
            return;
        }

        using var bitmap = SKBitmap.Decode(bytes);
        if (bitmap is null)
        {
            html.Append("<div class=\"thumb absent\">image file cannot be decoded</div>\n");
            return;
        }

        var side = Math.Max(bitmap.Width, bitmap.Height);
        string uri;
        int width, height;
        if (side <= StoredSide && bytes.Length <= MaximumOriginalBytes && s_mimeTypes.TryGetValue(Path.GetExtension(path), out var mime))
        {
            uri = DataUri(mime, bytes);
            (width, height) = (bitmap.Width, bitmap.Height);
        }
        else
        {
            var shrink = Math.Min(1.0, (double)StoredSide / side);
            width = Math.Max(1, (int)Math.Round(bitmap.Width * shrink));
            height = Math.Max(1, (int)Math.Round(bitmap.Height * shrink));
            using var resized = bitmap.Resize(new SKImageInfo(width, height), SKFilterQuality.Medium);
            using var image = SKImage.FromBitmap(resized);

            // JPEG keeps photos small but has no alpha channel, so images that may be transparent stay PNG.
            var opaque = resized.AlphaType == SKAlphaType.Opaque;
            using var encoded = image.Encode(opaque ? SKEncodedImageFormat.Jpeg : SKEncodedImageFormat.Png, 85);
            uri = DataUri(opaque ? "image/jpeg" : "image/png", encoded.ToArray());
        }

        // Small images are enlarged by a whole factor with hard pixel edges: a blurred 28x28 image shows nothing.
        // Larger ones are stored at twice the shown size so they stay sharp on high-density screens.
        var pixelated = side < DisplaySide;
        var scale = pixelated ? DisplaySide / side : (double)DisplaySide / Math.Max(width, height);
        html.Append(Invariant($"<div class=\"thumb\"><img src=\"{uri}\" width=\"{Math.Round(width * scale)}\" height=\"{Math.Round(height * scale)}\""))
            .Append(pixelated ? " class=\"pixelated\"" : "")
            .Append(" alt=\"").Append(Encode(alt)).Append("\"/></div>\n");
    }

    /// <param name="html">The page being written.</param>
    /// <param name="name">The figure's name.</param>
    /// <param name="value">The figure.</param>
    /// <param name="detail">A line under it.</param>
    /// <param name="breakAfter">A long text value (the backbone description) may wrap after this character only.</param>
    private static void Card(StringBuilder html, string name, string value, string detail, char? breakAfter = null) =>
        html.Append("<div class=\"card\"><div class=\"name\">").Append(Encode(name)).Append("</div>")
            .Append(breakAfter is { } separator
                ? "<div class=\"value text\">" + Encode(value).Replace(separator.ToString(), separator + "<wbr/>", StringComparison.Ordinal)
                : "<div class=\"value\">" + Encode(value))
            .Append("</div>")
            .Append("<div class=\"detail\">").Append(Encode(detail)).Append("</div></div>\n");

    internal static string DataUri(string mime, byte[] bytes) => $"data:{mime};base64,{Convert.ToBase64String(bytes)}";

    internal static string Percent(double share) => (share * 100).ToString("F1", CultureInfo.InvariantCulture) + "%";

    internal static string Encode(string text) => WebUtility.HtmlEncode(text);

    internal static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
