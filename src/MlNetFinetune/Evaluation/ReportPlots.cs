using System.Globalization;
using System.Xml.Linq;
using MlNetFinetune.Training.FineTuning;
using OxyPlot;
using OxyPlot.Annotations;
using OxyPlot.Axes;
using OxyPlot.Legends;
using OxyPlot.Series;

namespace MlNetFinetune.Evaluation;

/// <summary>
/// The report's plots, drawn with OxyPlot and exported as inline SVG: text stays sharp at any zoom and can be
/// searched and copied. Sizes follow the number of classes; OxyPlot makes room for the labels itself.
/// </summary>
internal static class ReportPlots
{
    /// <summary>
    /// Text is measured with Helvetica's metrics (OxyPlot's PDF code carries them, no font files needed); Arial, and
    /// Liberation Sans where Arial is missing, share them, so the margins OxyPlot reserves fit what the browser draws.
    /// </summary>
    private const string Font = "Arial";

    private const double FontSize = 12;

    /// <summary>Longer class names are shortened in the plots, so that one long name does not squeeze the rest.</summary>
    private const int MaximumLabelCharacters = 24;

    /// <summary>Shades per half of the heat map's colour scale: enough for a smooth colour bar, few SVG rectangles.</summary>
    private const int ShadesPerSide = 50;

    private static readonly OxyColor s_ink = OxyColor.FromRgb(0x1d, 0x1d, 0x1f);
    private static readonly OxyColor s_grid = OxyColor.FromRgb(0xe3, 0xe3, 0xe3);

    private static readonly (string Name, OxyColor Color, Func<ClassMetrics, double> Value)[] s_metricSeries =
    [
        ("precision", OxyColor.Parse("#4e79a7"), m => m.Precision),
        ("recall", OxyColor.Parse("#f28e2b"), m => m.Recall),
        ("F1", OxyColor.Parse("#59a14f"), m => m.F1),
    ];

    /// <summary>
    /// Rows are true classes, columns predicted ones. Colour is the cell's share of its row (the true class), so a
    /// rare class's mistakes are as visible as a common one's; blue marks the diagonal, red the mistakes. One colour
    /// axis carries both: right answers are stored as positive shares, mistakes as negative ones.
    /// </summary>
    public static string ConfusionHeatmap(IReadOnlyList<string> names, int[][] matrix)
    {
        var k = names.Count;
        var cell = Math.Clamp(640 / Math.Max(k, 1), 24, 48);

        // HeatMapSeries indexes its data [x, y]: x is the predicted class, y the true one.
        var shares = new double[k, k];
        for (var i = 0; i < k; i++)
        {
            var rowTotal = matrix[i].Sum();
            for (var j = 0; j < k; j++)
            {
                var share = matrix[i][j] == 0 ? double.NaN : (double)matrix[i][j] / rowTotal;
                shares[j, i] = i == j ? share : -share;
            }
        }

        var model = NewModel();
        var labels = names.Select(Label).ToList();
        model.Axes.Add(new CategoryAxis
        {
            Position = AxisPosition.Bottom,
            Title = "predicted class",
            ItemsSource = labels,
            Angle = -45,
        });

        // Reversed, so that the first class is the top row, as in a table.
        model.Axes.Add(new CategoryAxis
        {
            Position = AxisPosition.Left,
            Title = "true class",
            ItemsSource = labels,
            StartPosition = 1,
            EndPosition = 0,
        });
        model.Axes.Add(new LinearColorAxis
        {
            Position = AxisPosition.Right,
            Title = "share of the true class",
            Minimum = -1,
            Maximum = 1,
            MajorStep = k * cell >= 300 ? 0.25 : 0.5, // a short colour bar has no room for every quarter
            MinorTickSize = 0,
            Palette = SharePalette(),
            InvalidNumberColor = OxyColor.FromRgb(0xfa, 0xfa, 0xfa),
            LabelFormatter = v => (Math.Abs(v) * 100).ToString("0", CultureInfo.InvariantCulture) + "%",
        });

        // Whole cells as rectangles rather than one embedded bitmap: crisp at any zoom, and no blurring between cells.
        model.Series.Add(new CountHeatMapSeries(matrix)
        {
            X0 = 0,
            X1 = k - 1,
            Y0 = 0,
            Y1 = k - 1,
            Data = shares,
            CoordinateDefinition = HeatMapCoordinateDefinition.Center,
            RenderMethod = HeatMapRenderMethod.Rectangles,
            LabelFontSize = Math.Min(FontSize, cell * 0.45) / cell,
        });

        return Export(model, "heatmap", "Confusion matrix: rows are true classes, columns predicted classes", k * cell, k * cell);
    }

    /// <summary>Horizontal grouped bars, one group per class, so long class names stay readable without rotation.</summary>
    public static string MetricBars(IReadOnlyList<ClassMetrics> classes)
    {
        var model = NewModel();
        AddLegendAbove(model);
        model.Axes.Add(new CategoryAxis
        {
            Position = AxisPosition.Left,
            ItemsSource = classes.Select(c => Label(c.Name)).ToList(),
            StartPosition = 1,
            EndPosition = 0,
            GapWidth = 0.5,
        });

        // The extra room past 1 keeps the value label of a perfect score inside the plot.
        model.Axes.Add(new LinearAxis
        {
            Position = AxisPosition.Bottom,
            Minimum = 0,
            Maximum = 1.1,
            MajorStep = 0.2,
            MinorStep = 0.1,
            MajorGridlineStyle = LineStyle.Solid,
            MajorGridlineColor = s_grid,
            LabelFormatter = v => v <= 1 ? v.ToString("0.0", CultureInfo.InvariantCulture) : "",
        });

        foreach (var (name, color, value) in s_metricSeries)
        {
            var series = new BarSeries
            {
                Title = name,
                FillColor = color,
                LabelFormatString = "{0:0.00}",
                LabelPlacement = LabelPlacement.Outside,
                LabelMargin = 3,

                // A bar of zero length has no direction, and OxyPlot centres its label on the axis, half cut off;
                // starting the bars a hair below zero puts that label beside the axis like the others.
                BaseValue = -1e-9,
                FontSize = 10,
                TextColor = s_ink,
            };
            series.Items.AddRange(classes.Select(c => new BarItem(Math.Max(value(c), 0))));

            model.Series.Add(series);
        }

        return Export(model, "bars", "Precision, recall and F1 per class", 480, classes.Count * 48);
    }

    /// <summary>
    /// Learning curves of a fine-tuning: one plot of a measure per epoch (loss or accuracy), training against
    /// validation, with the kept epoch marked. Epoch 0, the head trained alone, is drawn too: it is where the
    /// backbone's training starts from.
    /// </summary>
    public static string LearningCurve(IReadOnlyList<FineTuneEpoch> history, int bestEpoch, string measure,
        Func<FineTuneEpoch, double> train, Func<FineTuneEpoch, double> validation)
    {
        var model = NewModel();
        AddLegendAbove(model);
        var first = history.Count > 0 ? history.Min(h => h.Epoch) : 0;
        var last = history.Count > 0 ? history.Max(h => h.Epoch) : 1;
        model.Axes.Add(new LinearAxis
        {
            Position = AxisPosition.Bottom,
            Title = "epoch",
            Minimum = first - 0.25,
            Maximum = Math.Max(last, first + 1) + 0.25,
            MajorStep = Math.Max(1, Math.Ceiling((last - first) / 10.0)),
            MinorTickSize = 0,
            LabelFormatter = v => v.ToString("0", CultureInfo.InvariantCulture),
        });
        model.Axes.Add(new LinearAxis
        {
            Position = AxisPosition.Left,
            Title = measure,
            MajorGridlineStyle = LineStyle.Solid,
            MajorGridlineColor = s_grid,
            MinorTickSize = 0,

            // Room above and below, so that the highest and lowest points are not drawn on the frame.
            MinimumPadding = 0.08,
            MaximumPadding = 0.12,
        });

        foreach (var (name, color, value) in new[] { ("training", OxyColor.Parse("#4e79a7"), train), ("validation", OxyColor.Parse("#f28e2b"), validation) })
        {
            var series = new LineSeries
            {
                Title = name,
                Color = color,
                MarkerType = MarkerType.Circle,
                MarkerSize = 3,
                MarkerFill = color,
                StrokeThickness = 2,
            };

            // A NaN (no validation images, a diverged epoch) breaks the line instead of bending it to zero.
            series.Points.AddRange(history.Select(h => new DataPoint(h.Epoch, double.IsFinite(value(h)) ? value(h) : double.NaN)));
            model.Series.Add(series);
        }

        if (history.Any(h => h.Epoch == bestEpoch))
        {
            model.Annotations.Add(new LineAnnotation
            {
                Type = LineAnnotationType.Vertical,
                X = bestEpoch,
                Color = OxyColor.FromRgb(0x59, 0xa1, 0x4f),
                LineStyle = LineStyle.Dash,
                Text = "kept",
                TextColor = s_ink,
                FontSize = 11,
                TextOrientation = AnnotationTextOrientation.Horizontal,
                TextHorizontalAlignment = HorizontalAlignment.Right,
            });
        }

        var cssClass = "curve-" + new string([.. measure.Where(char.IsAsciiLetter)]);
        return Export(model, cssClass, $"{measure} per epoch, training and validation", 420, 240);
    }

    /// <summary>One horizontal legend above the plot, out of the data's way.</summary>
    private static void AddLegendAbove(PlotModel model) => model.Legends.Add(new Legend
    {
        LegendPlacement = LegendPlacement.Outside,
        LegendPosition = LegendPosition.TopLeft,
        LegendOrientation = LegendOrientation.Horizontal,
        LegendFont = Font,
        LegendFontSize = FontSize,
    });

    private static PlotModel NewModel() => new()
    {
        DefaultFont = Font,
        DefaultFontSize = FontSize,
        TextColor = s_ink,
        TitleColor = s_ink,
        PlotAreaBorderColor = OxyColor.FromRgb(0xbb, 0xbb, 0xbb),
        Background = OxyColors.White,
        Padding = new OxyThickness(4, 8, 12, 4),
    };

    /// <summary>
    /// Red shades for negative values (mistakes), blue ones for positive values (right answers), each darkening with
    /// the share. The square root lifts small shares: one mistake in a class of ten must not look like an empty cell.
    /// </summary>
    private static OxyPalette SharePalette()
    {
        var colors = new List<OxyColor>(2 * ShadesPerSide);
        for (var s = ShadesPerSide - 1; s >= 0; s--)
        {
            colors.Add(Shade((253, 236, 234), (150, 35, 28), (s + 0.5) / ShadesPerSide));
        }

        for (var s = 0; s < ShadesPerSide; s++)
        {
            colors.Add(Shade((235, 242, 250), (24, 76, 142), (s + 0.5) / ShadesPerSide));
        }

        return new OxyPalette(colors);
    }

    private static OxyColor Shade((byte R, byte G, byte B) light, (byte R, byte G, byte B) dark, double share)
    {
        var t = Math.Sqrt(share);
        return OxyColor.FromRgb(Lerp(light.R, dark.R, t), Lerp(light.G, dark.G, t), Lerp(light.B, dark.B, t));
    }

    private static byte Lerp(byte from, byte to, double t) => (byte)Math.Round(from + (to - from) * t);

    /// <summary>
    /// Lays the plot out once to learn the margins OxyPlot needs around the plot area for labels, titles and the
    /// legend, then exports it at the size that gives the plot area the wanted size (square cells, fixed bar height).
    /// </summary>
    private static string Export(PlotModel model, string cssClass, string description, double plotWidth, double plotHeight)
    {
        var measurer = new PixelTextMeasurer();
        var guess = new SvgExporter { Width = plotWidth + 400, Height = plotHeight + 400, IsDocument = false, TextMeasurer = measurer };
        guess.ExportToString(model);
        var width = Math.Ceiling(guess.Width - model.PlotArea.Width + plotWidth);
        var height = Math.Ceiling(guess.Height - model.PlotArea.Height + plotHeight);

        // IsDocument = false leaves out the XML declaration and doctype, which may not stand inside the page.
        var exporter = new SvgExporter { Width = width, Height = height, IsDocument = false, TextMeasurer = measurer };
        var svg = XElement.Parse(exporter.ExportToString(model));
        svg.SetAttributeValue("class", cssClass);
        svg.SetAttributeValue("role", "img");
        svg.SetAttributeValue("aria-label", description);
        svg.SetAttributeValue("viewBox", string.Create(CultureInfo.InvariantCulture, $"0 0 {width} {height}"));

        // OxyPlot numbers its clip paths from 1 in every export; with two plots in one page, url(#clipPath1) would
        // find the first plot's and cut the second off at that plot's size.
        foreach (var element in svg.Descendants())
        {
            if (element.Attribute("id") is { } id)
            {
                id.Value = $"{cssClass}-{id.Value}";
            }

            if (element.Attribute("clip-path") is { } clip)
            {
                clip.Value = clip.Value.Replace("url(#", $"url(#{cssClass}-", StringComparison.Ordinal);
            }
        }

        return svg.ToString(SaveOptions.DisableFormatting);
    }

    /// <summary>
    /// A class name shortened for an axis: cut between text elements, never inside a surrogate pair or a combining
    /// sequence (half an emoji is not valid XML), and with line breaks shown as spaces.
    /// </summary>
    private static string Label(string name)
    {
        var text = new StringInfo(string.Concat(name.Select(c => char.IsControl(c) ? ' ' : c)));
        return text.LengthInTextElements <= MaximumLabelCharacters ? text.String : text.SubstringByTextElements(0, MaximumLabelCharacters - 1) + "…";
    }

    /// <summary>
    /// OxyPlot's default measurer for SVG (its PDF context) cut labels off: it returns sizes in points for font sizes
    /// in pixels, three quarters of the drawn extent, and counts characters outside Latin-1 (the ellipsis of a
    /// shortened name, Greek, CJK) as zero wide. This one answers in pixels and counts those as a wide letter.
    /// </summary>
    private sealed class PixelTextMeasurer() : PdfRenderContext(1, 1, OxyColors.Undefined)
    {
        private const double PixelsPerPoint = 96.0 / 72.0;

        public override OxySize MeasureText(string text, string fontFamily, double fontSize, double fontWeight)
        {
            var latin1 = string.Create(text.Length, text, (chars, source) =>
            {
                for (var i = 0; i < chars.Length; i++)
                {
                    chars[i] = source[i] <= '\u00ff' ? source[i] : 'W';
                }
            });
            var size = base.MeasureText(latin1, fontFamily, fontSize, fontWeight);
            return new OxySize(size.Width * PixelsPerPoint, size.Height * PixelsPerPoint);
        }
    }

    /// <summary>Colours cells by their share of the true class but labels them with the count of images.</summary>
    private sealed class CountHeatMapSeries(int[][] counts) : HeatMapSeries
    {
        protected override string GetLabel(double v, int i, int j) =>
            counts[j][i] == 0 ? "" : counts[j][i].ToString(CultureInfo.InvariantCulture);
    }
}
