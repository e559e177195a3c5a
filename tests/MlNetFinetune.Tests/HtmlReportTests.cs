using System.Globalization;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using MlNetFinetune.Data;
using MlNetFinetune.Evaluation;
using SkiaSharp;

namespace MlNetFinetune.Tests;

[Collection(SampleModelCollection.Name)]
public sealed class HtmlReportTests(SampleModelFixture fixture)
{
    [Fact]
    public void ReportHtmlIsOneWellFormedSelfContainedPage()
    {
        var folder = Path.Combine(fixture.Root, "html-" + Guid.NewGuid().ToString("N")[..8]);
        HtmlReportWriter.Write(fixture.Result.Report, fixture.Result.HeldOutPredictions, folder);
        var html = File.ReadAllText(Path.Combine(folder, HtmlReportWriter.FileName));

        Assert.Empty(Directory.GetFiles(folder, "*.tmp-*"));
        Assert.StartsWith("<!DOCTYPE html>", html, StringComparison.Ordinal);
        Assert.Single(Regex.Matches(html, "<html[ >]"));
        var page = Parse(html);
        Assert.Single(Elements(page, "head"));
        Assert.Single(Elements(page, "body"));
        var images = Elements(page, "img").ToList();
        Assert.NotEmpty(images);
        Assert.All(images, img => Assert.StartsWith("data:image/", (string?)img.Attribute("src"), StringComparison.Ordinal));
        Assert.DoesNotContain(page.Descendants(), e => e.Attribute("href") is not null || e.Name.LocalName is "script" or "link" or "iframe");

        // Ids must be unique in the page: both plots clip their drawing, and a clash made one plot use the other's clip.
        var ids = page.Descendants().Select(e => (string?)e.Attribute("id")).OfType<string>().ToList();
        Assert.Equal(ids.Distinct(), ids);
        Assert.All(page.Descendants().Select(e => (string?)e.Attribute("clip-path")).OfType<string>(),
            clip => Assert.Contains(Regex.Match(clip, @"^url\(#(.+)\)$").Groups[1].Value, ids));
    }

    [Fact]
    public void PlotsAreEmbeddedAndNameEveryClass()
    {
        var report = fixture.Result.Report;
        var page = Parse(HtmlReportWriter.ToHtml(report, fixture.Result.HeldOutPredictions));
        var heatmap = Assert.Single(Elements(page, "svg"), e => HasClass(e, "heatmap"));
        var bars = Assert.Single(Elements(page, "svg"), e => HasClass(e, "bars"));
        Assert.Equal(2, Elements(page, "svg").Count());

        // Each class labels a row and a column of the heat map and a group of bars.
        foreach (var name in report.ClassNames)
        {
            Assert.Equal(2, Texts(heatmap).Count(t => t == name));
            Assert.Single(Texts(bars), t => t == name);
        }

        // The heat map's only integers are its cell labels: one per non-empty cell, with the cell's count.
        var counts = report.ConfusionMatrix.SelectMany(row => row).Where(c => c > 0).Order();
        Assert.Equal(counts, Texts(heatmap).Where(t => Regex.IsMatch(t, @"^\d+$")).Select(int.Parse).Order());

        var values = report.Classes.SelectMany(c => new[] { c.Precision, c.Recall, c.F1 }).Select(v => v.ToString("0.00", CultureInfo.InvariantCulture)).Order();
        Assert.Equal(values, Texts(bars).Where(t => Regex.IsMatch(t, @"^\d\.\d\d$")).Order());
        Assert.All(["precision", "recall", "F1"], legend => Assert.Single(Texts(bars), t => t == legend));
    }

    [Fact]
    public void ManyClassesWithLongNamesGetRoomAndShortenedLabels()
    {
        var names = Enumerable.Range(0, 25).Select(i => $"class {i:00} with a rather long descriptive name").ToArray();
        var predictions = Enumerable.Range(0, 25 * 4)
            .Select(i => new HeldOutPrediction($"/gone/{i}.png", names[i % 25], names[i % 7 == 0 ? (i + 1) % 25 : i % 25], [.. Enumerable.Repeat(0.04f, 25)]))
            .ToList();
        var training = new TrainingSummary("backbone", 512, 10, 2, predictions.Count, "test", "softmax", 0.1f, [], 0, 0, 0, 0, 0, 1);
        var report = HeldOutEvaluator.Evaluate(names, predictions, [], training);

        var page = Parse(HtmlReportWriter.ToHtml(report, predictions));
        var heatmap = Assert.Single(Elements(page, "svg"), e => HasClass(e, "heatmap"));
        var bars = Assert.Single(Elements(page, "svg"), e => HasClass(e, "bars"));

        var labels = names.Select(n => n[..23] + "…").ToList();
        Assert.Equal(25, labels.Distinct().Count());
        Assert.All(labels, label => Assert.Equal(2, Texts(heatmap).Count(t => t == label)));
        Assert.All(labels, label => Assert.Single(Texts(bars), t => t == label));

        // Cells at least 24 pixels square and bars at least 10 pixels thick, whatever room the labels take.
        Assert.True(Size(heatmap, "width") >= 25 * 24 && Size(heatmap, "height") >= 25 * 24, "the heat map is too small for 25 classes");
        Assert.True(Size(bars, "height") >= 25 * 3 * 10, "the bars are too thin for 25 classes");
    }

    [Fact]
    public void GalleryShowsTheMostConfidentMistakesFirst()
    {
        var predictions = fixture.Result.HeldOutPredictions;
        var page = Parse(HtmlReportWriter.ToHtml(fixture.Result.Report, predictions));
        var figures = Elements(page, "figure").Where(e => HasClass(e, "mistake")).ToList();
        var wrong = predictions.Where(p => p.TrueLabel != p.PredictedLabel).ToList();
        var byPath = predictions.ToDictionary(p => p.Path);

        Assert.NotEmpty(wrong);
        Assert.Equal(Math.Min(HtmlReportWriter.GalleryLimit, wrong.Count), figures.Count);
        var shown = figures.Select(f => byPath[(string)f.Attribute("data-path")!]).ToList();
        Assert.All(shown, p => Assert.NotEqual(p.TrueLabel, p.PredictedLabel));
        Assert.All(figures.Zip(shown), pair =>
        {
            Assert.Equal(pair.Second.TrueLabel, (string?)pair.First.Attribute("data-true"));
            Assert.Equal(pair.Second.PredictedLabel, (string?)pair.First.Attribute("data-predicted"));
            Assert.Single(Elements(pair.First, "img"));
        });
        var confidences = shown.Select(p => p.Scores.Max()).ToList();
        Assert.Equal(confidences.OrderByDescending(c => c), confidences);
        Assert.All(wrong.Except(shown), p => Assert.True(p.Scores.Max() <= confidences[^1], $"{p.Path} is more confident than the gallery's last"));
    }

    [Fact]
    public void ClassNamesAreEncodedAndGoneOrLargeImagesAreHandled()
    {
        var folder = Directory.CreateDirectory(Path.Combine(fixture.Root, "html-" + Guid.NewGuid().ToString("N")[..8])).FullName;
        var large = Path.Combine(folder, "large.png");
        using (var bitmap = new SKBitmap(1600, 1200))
        {
            bitmap.Erase(SKColors.SteelBlue);
            using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
            File.WriteAllBytes(large, data.ToArray());
        }

        var small = fixture.Result.HeldOutPredictions[0].Path;
        var gone = Path.Combine(folder, "gone.png");
        string[] names = ["<b>bold</b>", "Tom & \"Jerry\"", "plain"];
        var predictions = new List<HeldOutPrediction>
        {
            new(gone, names[0], names[1], [0.1f, 0.8f, 0.1f]),
            new(large, names[1], names[2], [0.1f, 0.2f, 0.7f]),
            new(small, names[2], names[0], [0.6f, 0.1f, 0.3f]),
            new(small, names[2], names[2], [0.1f, 0.1f, 0.8f]),
        };
        var training = new TrainingSummary("backbone", 512, 10, 2, predictions.Count, "test", "softmax", 0.1f, [], 0, 0, 0, 0, 0, 1);
        var report = HeldOutEvaluator.Evaluate(names, predictions, [new SkippedFile("<odd>.png", "empty file (0 bytes)")], training);

        var html = HtmlReportWriter.ToHtml(report, predictions);

        Assert.DoesNotContain("<b>bold</b>", html, StringComparison.Ordinal);
        Assert.DoesNotContain("<odd>", html, StringComparison.Ordinal);
        var page = Parse(html);
        var heatmap = Assert.Single(Elements(page, "svg"), e => HasClass(e, "heatmap"));
        Assert.All(names, name => Assert.Contains(Elements(heatmap, "text"), t => DirectText(t) == name));

        var figures = Elements(page, "figure").Where(e => HasClass(e, "mistake")).ToDictionary(f => (string)f.Attribute("data-path")!);
        Assert.Equal(3, figures.Count);
        Assert.Empty(Elements(figures[gone], "img"));
        Assert.Contains("image file is gone", figures[gone].Value, StringComparison.Ordinal);

        var largeImage = Assert.Single(Elements(figures[large], "img"));
        Assert.True(((string)largeImage.Attribute("src")!).Length < 100_000, "the large image is embedded at full size");
        Assert.True((int)largeImage.Attribute("width")! <= 112);
        Assert.False(HasClass(largeImage, "pixelated"));

        var smallImage = Assert.Single(Elements(figures[small], "img"));
        Assert.True(HasClass(smallImage, "pixelated"));
        Assert.Equal(28 * 4, (int)smallImage.Attribute("width")!);
    }

    /// <summary>The page is written as well-formed XML (polyglot HTML), so an XML parser checks that every tag is closed.</summary>
    private static XDocument Parse(string html) => XDocument.Parse(html);

    private static IEnumerable<XElement> Elements(XContainer container, string name) =>
        container.Descendants().Where(e => e.Name.LocalName == name);

    private static bool HasClass(XElement element, string cssClass) =>
        ((string?)element.Attribute("class"))?.Split(' ').Contains(cssClass) == true;

    private static IEnumerable<string> Texts(XElement svg) => Elements(svg, "text").Select(DirectText);

    private static double Size(XElement svg, string attribute) => double.Parse((string)svg.Attribute(attribute)!, CultureInfo.InvariantCulture);

    private static string DirectText(XElement element) => string.Concat(element.Nodes().OfType<XText>().Select(t => t.Value));
}
