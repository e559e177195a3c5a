using System.Text;
using MlNetFinetune.Evaluation;

namespace MlNetFinetune.Explanations;

/// <summary>The sections of report.html that explain the model: suspected label errors and near duplicates, with thumbnails.</summary>
internal static class ExplanationSections
{
    /// <summary>How many suspects and near-duplicate pairs the page shows; the CSV and report.json have them all.</summary>
    public const int ShownLimit = 24;

    /// <summary>A heat-map overlay (JPEG) at the gallery's thumbnail size, with its caption under it.</summary>
    public static void AppendOverlay(StringBuilder html, byte[] jpeg, string caption, int side) =>
        html.Append("<div class=\"view\"><div class=\"thumb\"><img src=\"").Append(HtmlReportWriter.DataUri("image/jpeg", jpeg))
            .Append(HtmlReportWriter.Invariant($"\" width=\"{side}\" height=\"{side}\" alt=\"")).Append(HtmlReportWriter.Encode(caption)).Append("\"/></div>")
            .Append(HtmlReportWriter.Encode(caption)).Append("</div>\n");

    public static void AppendLabelErrors(StringBuilder html, LabelErrorSearchResult? search)
    {
        if (search is null)
        {
            return;
        }

        html.Append("<section id=\"label-errors\">\n<h2>Suspected label errors</h2>\n")
            .Append(HtmlReportWriter.Invariant($"<p class=\"note\">Each of the {search.Images} training images was scored by a head trained on the other {search.Folds - 1} of {search.Folds} folds, never on the image itself. {search.Suspects.Count} are predicted as another class than their folder says; "))
            .Append(HtmlReportWriter.Invariant($"the ones whose given label is least likely come first. Look at them: a wrong folder is fixed by moving the file. All are listed in <code>{LabelErrorSearchResult.FileName}</code>.</p>\n"));
        if (search.Suspects.Count == 0)
        {
            html.Append("<p class=\"note\">No training image disagrees with its label.</p>\n</section>\n");
            return;
        }

        html.Append("<div class=\"gallery\">\n");
        foreach (var s in search.Suspects.Take(ShownLimit))
        {
            html.Append("<figure class=\"suspect\" data-path=\"").Append(HtmlReportWriter.Encode(s.Path)).Append("\" data-given=\"").Append(HtmlReportWriter.Encode(s.GivenLabel))
                .Append("\" data-predicted=\"").Append(HtmlReportWriter.Encode(s.PredictedLabel)).Append("\">\n");
            HtmlReportWriter.AppendThumbnail(html, s.Path, $"labelled {s.GivenLabel}, looks like {s.PredictedLabel}");
            html.Append("<figcaption>\n")
                .Append("<div class=\"file\" title=\"").Append(HtmlReportWriter.Encode(s.Path)).Append("\">").Append(HtmlReportWriter.Encode(Path.GetFileName(s.Path))).Append("</div>\n")
                .Append("<div>labelled <b>").Append(HtmlReportWriter.Encode(s.GivenLabel)).Append("</b></div>\n")
                .Append("<div>looks like <b class=\"predicted\">").Append(HtmlReportWriter.Encode(s.PredictedLabel)).Append("</b></div>\n")
                .Append(HtmlReportWriter.Invariant($"<div>confidence <span class=\"confidence\">{HtmlReportWriter.Percent(s.PredictedProbability)}</span></div>\n"))
                .Append(HtmlReportWriter.Invariant($"<div class=\"muted\">p(given label) {HtmlReportWriter.Percent(s.GivenLabelProbability)}</div>\n"))
                .Append("</figcaption>\n</figure>\n");
        }

        html.Append("</div>\n</section>\n");
    }

    public static void AppendNearDuplicates(StringBuilder html, NearDuplicateSearchResult? search)
    {
        if (search is null)
        {
            return;
        }

        var without = search.AccuracyWithout is double accuracy
            ? HtmlReportWriter.Invariant($" Held-out accuracy over the {search.HeldOutImages - search.Pairs.Count} images without one: <b>{HtmlReportWriter.Percent(accuracy)}</b>.")
            : "";
        html.Append("<section id=\"near-duplicates\">\n<h2>Near duplicates</h2>\n")
            .Append(HtmlReportWriter.Invariant($"<p class=\"note\">Held-out images that look almost the same to the backbone as a training image (cosine similarity of standardised bottleneck features of at least {search.Threshold}; byte-identical copies are counted separately). "))
            .Append(HtmlReportWriter.Invariant($"They flatter the held-out accuracy: the model has as good as seen them. {search.Pairs.Count} of {search.HeldOutImages} held-out images have one.{without}</p>\n"));
        if (search.Pairs.Count == 0)
        {
            html.Append("</section>\n");
            return;
        }

        html.Append("<div class=\"gallery explained\">\n");
        foreach (var pair in search.Pairs.Take(ShownLimit))
        {
            html.Append("<figure class=\"pair\" data-held-out=\"").Append(HtmlReportWriter.Encode(pair.HeldOutPath)).Append("\" data-training=\"").Append(HtmlReportWriter.Encode(pair.TrainingPath))
                .Append(HtmlReportWriter.Invariant($"\" data-similarity=\"{pair.Similarity:R}\">\n<div class=\"views\">\n"));
            foreach (var (path, label, part) in new[] { (pair.HeldOutPath, pair.HeldOutLabel, "held-out"), (pair.TrainingPath, pair.TrainingLabel, "training") })
            {
                html.Append("<div class=\"view\">");
                HtmlReportWriter.AppendThumbnail(html, path, $"{part} image, {label}");
                html.Append(HtmlReportWriter.Encode($"{part}: {label}")).Append("<div class=\"file\" title=\"").Append(HtmlReportWriter.Encode(path)).Append("\">")
                    .Append(HtmlReportWriter.Encode(Path.GetFileName(path))).Append("</div></div>\n");
            }

            html.Append("</div>\n<figcaption>").Append(HtmlReportWriter.Invariant($"similarity <span class=\"confidence\">{pair.Similarity:F3}</span>")).Append("</figcaption>\n</figure>\n");
        }

        html.Append("</div>\n</section>\n");
    }
}
