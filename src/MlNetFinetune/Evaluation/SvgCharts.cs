using System.Globalization;
using System.Net;
using System.Text;

namespace MlNetFinetune.Evaluation;

/// <summary>
/// The report's plots as inline SVG: text stays sharp at any zoom, can be searched and copied, and every mark carries
/// a tooltip with its exact value. Sizes follow the number of classes and the length of their names.
/// </summary>
internal static class SvgCharts
{
    private const int FontSize = 12;

    // A generous average glyph width for the page's sans-serif at FontSize, so estimated label widths never clip.
    private const double GlyphWidth = 7.2;

    /// <summary>Longer class names are shortened in the plots (the tooltip has the whole name).</summary>
    private const int MaximumLabelCharacters = 24;

    private static readonly (string Name, string Color)[] s_metricSeries =
        [("precision", "#4e79a7"), ("recall", "#f28e2b"), ("F1", "#59a14f")];

    /// <summary>
    /// Rows are true classes, columns predicted ones. Colour is the cell's share of its row (the true class), so a
    /// rare class's mistakes are as visible as a common one's; blue marks the diagonal, red the mistakes.
    /// </summary>
    public static string ConfusionHeatmap(IReadOnlyList<string> names, int[][] matrix)
    {
        var k = names.Count;
        var cell = Math.Clamp(640 / Math.Max(k, 1), 14, 48);

        // Dense matrices get smaller text so that neighbouring labels and counts do not run into each other.
        var labelFont = Math.Clamp(cell * 0.6, 9, FontSize);
        var countFont = Math.Clamp(cell / 2.0, 9, FontSize);
        var labelWidth = LabelWidth(names);
        var left = 28 + labelWidth;
        const int top = 24;
        var grid = k * cell;
        var columnLabelDepth = (int)Math.Ceiling((labelWidth + 10) * Math.Sqrt(0.5)) + 8;
        var width = left + grid + 52;
        var height = top + grid + columnLabelDepth + 26;

        var svg = Begin("heatmap", width, height, "Confusion matrix: rows are true classes, columns predicted classes");
        svg.Append(Invariant($"<text class=\"axis-title\" transform=\"translate(12 {top + grid / 2}) rotate(-90)\" text-anchor=\"middle\">true class</text>"));
        svg.Append(Invariant($"<text class=\"axis-title\" x=\"{left + grid / 2}\" y=\"{height - 6}\" text-anchor=\"middle\">predicted class</text>"));
        svg.Append(Invariant($"<text class=\"muted\" x=\"{left + grid + 8}\" y=\"{top - 8}\">images</text>"));
        for (var i = 0; i < k; i++)
        {
            var y = top + i * cell;
            svg.Append(Invariant($"<text x=\"{left - 6}\" y=\"{y + cell / 2.0}\" dy=\"0.35em\" text-anchor=\"end\" font-size=\"{labelFont:0.#}\">{Label(names[i])}</text>"));
            var x = left + i * cell + cell / 2.0;
            var labelY = top + grid + 8;
            svg.Append(Invariant($"<text transform=\"translate({x} {labelY}) rotate(-45)\" dy=\"0.35em\" text-anchor=\"end\" font-size=\"{labelFont:0.#}\">{Label(names[i])}</text>"));

            var rowTotal = matrix[i].Sum();
            svg.Append(Invariant($"<text class=\"muted\" x=\"{left + grid + 8}\" y=\"{y + cell / 2.0}\" dy=\"0.35em\">{rowTotal}</text>"));
            for (var j = 0; j < k; j++)
            {
                var count = matrix[i][j];
                var share = rowTotal == 0 ? 0 : (double)count / rowTotal;

                // The square root lifts small shares: one mistake in a class of ten must not look like an empty cell.
                var intensity = Math.Sqrt(share);
                var fill = count == 0 ? "#fafafa" : i == j
                    ? Mix((235, 242, 250), (31, 95, 168), intensity)
                    : Mix((253, 236, 234), (192, 57, 43), intensity);
                var tooltip = Invariant($"true {names[i]}, predicted {names[j]}: {count} of {rowTotal} ({share * 100:F1}%)");
                svg.Append(Invariant($"<rect class=\"cell\" x=\"{left + j * cell}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" fill=\"{fill}\" data-true=\"{Encode(names[i])}\" data-predicted=\"{Encode(names[j])}\" data-count=\"{count}\"><title>{Encode(tooltip)}</title></rect>"));
                if (count > 0 && cell >= 18)
                {
                    var ink = intensity > 0.6 ? "#ffffff" : "#222222";
                    svg.Append(Invariant($"<text class=\"count\" x=\"{left + j * cell + cell / 2.0}\" y=\"{y + cell / 2.0}\" dy=\"0.35em\" text-anchor=\"middle\" font-size=\"{countFont:0.#}\" fill=\"{ink}\">{count}</text>"));
                }
            }
        }

        svg.Append(Invariant($"<rect x=\"{left}\" y=\"{top}\" width=\"{grid}\" height=\"{grid}\" fill=\"none\" stroke=\"#bbbbbb\"/>"));
        return End(svg);
    }

    /// <summary>Horizontal grouped bars, one group per class, so long class names stay readable without rotation.</summary>
    public static string MetricBars(IReadOnlyList<ClassMetrics> classes)
    {
        const int bar = 8;
        const int plotWidth = 440;
        const int top = 44;
        var rowHeight = s_metricSeries.Length * (bar + 1) + 14;
        var labelWidth = LabelWidth(classes.Select(c => c.Name));
        var left = labelWidth + 12;
        var width = left + plotWidth + 48;
        var height = top + classes.Count * rowHeight + 6;

        var svg = Begin("bars", width, height, "Precision, recall and F1 per class");
        var legendX = left;
        foreach (var (name, color) in s_metricSeries)
        {
            svg.Append(Invariant($"<rect x=\"{legendX}\" y=\"4\" width=\"12\" height=\"12\" fill=\"{color}\"/><text x=\"{legendX + 17}\" y=\"10\" dy=\"0.35em\">{name}</text>"));
            legendX += 28 + (int)(name.Length * GlyphWidth) + 12;
        }

        for (var c = 0; c < classes.Count; c++)
        {
            if (c % 2 == 0)
            {
                svg.Append(Invariant($"<rect x=\"0\" y=\"{top + c * rowHeight}\" width=\"{width}\" height=\"{rowHeight}\" fill=\"#f5f6f8\"/>"));
            }
        }

        for (var tick = 0; tick <= 5; tick++)
        {
            var x = left + tick * plotWidth / 5.0;
            svg.Append(Invariant($"<line x1=\"{x}\" y1=\"{top - 4}\" x2=\"{x}\" y2=\"{height - 6}\" stroke=\"#d9d9d9\"/>"));
            svg.Append(Invariant($"<text class=\"muted\" x=\"{x}\" y=\"{top - 10}\" text-anchor=\"middle\">{tick / 5.0:0.0}</text>"));
        }

        for (var c = 0; c < classes.Count; c++)
        {
            var metrics = classes[c];
            var groupTop = top + c * rowHeight + 7;
            svg.Append(Invariant($"<text x=\"{left - 8}\" y=\"{groupTop + (rowHeight - 14) / 2.0}\" dy=\"0.35em\" text-anchor=\"end\">{Label(metrics.Name)}<title>{Encode(metrics.Name)}: {metrics.Support} held-out images</title></text>"));
            double[] values = [metrics.Precision, metrics.Recall, metrics.F1];
            for (var s = 0; s < s_metricSeries.Length; s++)
            {
                var y = groupTop + s * (bar + 1);
                var length = Math.Max(values[s], 0) * plotWidth;
                var tooltip = Invariant($"{metrics.Name} {s_metricSeries[s].Name}: {values[s]:F3}");
                svg.Append(Invariant($"<rect class=\"bar\" x=\"{left}\" y=\"{y}\" width=\"{length:0.#}\" height=\"{bar}\" fill=\"{s_metricSeries[s].Color}\"><title>{Encode(tooltip)}</title></rect>"));
                svg.Append(Invariant($"<text class=\"value\" x=\"{left + length + 4:0.#}\" y=\"{y + bar / 2.0}\" dy=\"0.35em\">{values[s]:F2}</text>"));
            }
        }

        return End(svg);
    }

    private static StringBuilder Begin(string cssClass, int width, int height, string label) =>
        new StringBuilder()
            .Append(Invariant($"<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"{cssClass}\" role=\"img\" aria-label=\"{Encode(label)}\" "))
            .Append(Invariant($"width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-size=\"{FontSize}\">"));

    private static string End(StringBuilder svg) => svg.Append("</svg>").ToString();

    private static int LabelWidth(IEnumerable<string> names) =>
        (int)Math.Ceiling(Math.Min(names.Select(n => n.Length).DefaultIfEmpty(1).Max(), MaximumLabelCharacters) * GlyphWidth);

    private static string Label(string name) => Encode(name.Length <= MaximumLabelCharacters ? name : name[..(MaximumLabelCharacters - 1)] + "…");

    private static string Mix((int R, int G, int B) from, (int R, int G, int B) to, double t) =>
        $"#{Lerp(from.R, to.R, t):x2}{Lerp(from.G, to.G, t):x2}{Lerp(from.B, to.B, t):x2}";

    private static int Lerp(int from, int to, double t) => (int)Math.Round(from + (to - from) * t);

    private static string Encode(string text) => WebUtility.HtmlEncode(text);

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
