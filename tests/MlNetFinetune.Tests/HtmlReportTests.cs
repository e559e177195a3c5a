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
    }

    [Fact]
    public void PlotsAreEmbeddedAndNameEveryClass()
    {
        var report = fixture.Result.Report;
        var page = Parse(HtmlReportWriter.ToHtml(report, fixture.Result.HeldOutPredictions));
        var heatmap = Assert.Single(Elements(page, "svg"), e => HasClass(e, "heatmap"));
        var bars = Assert.Single(Elements(page, "svg"), e => HasClass(e, "bars"));

        foreach (var name in report.ClassNames)
        {
            Assert.Contains(Elements(heatmap, "text"), t => DirectText(t) == name);
            Assert.Contains(Elements(bars, "text"), t => DirectText(t) == name);
        }

        var cells = Elements(heatmap, "rect").Where(e => HasClass(e, "cell")).ToList();
        Assert.Equal(report.ClassNames.Count * report.ClassNames.Count, cells.Count);
        foreach (var cell in cells)
        {
            var row = report.ClassNames.ToList().IndexOf((string)cell.Attribute("data-true")!);
            var column = report.ClassNames.ToList().IndexOf((string)cell.Attribute("data-predicted")!);
            Assert.Equal(report.ConfusionMatrix[row][column], (int)cell.Attribute("data-count")!);
        }

        Assert.Equal(3 * report.Classes.Count, Elements(bars, "rect").Count(e => HasClass(e, "bar")));
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

    private static string DirectText(XElement element) => string.Concat(element.Nodes().OfType<XText>().Select(t => t.Value));
}
