using System.Text.Json;
using System.Xml.Linq;
using MlNetFinetune.Evaluation;
using MlNetFinetune.Explanations;

namespace MlNetFinetune.Tests.Explanations;

/// <summary>The default training run (the shared sample model) explains itself in its reports.</summary>
[Collection(SampleModelCollection.Name)]
public sealed class ReportExplanationTests(SampleModelFixture fixture)
{
    private string Folder => fixture.Options.OutputFolder;

    private XElement Html => XElement.Parse(File.ReadAllText(Path.Combine(Folder, HtmlReportWriter.FileName)));

    private static IEnumerable<XElement> Figures(XElement section) => section.Descendants().Where(e => e.Name.LocalName == "figure");

    private XElement Section(string id) => Html.Descendants().Single(e => e.Name.LocalName == "section" && (string?)e.Attribute("id") == id);

    [Fact]
    public void EveryGalleryMistakeShowsHeatMapsForThePredictedAndTheTrueClass()
    {
        var mistakes = HtmlReportWriter.MostConfidentMistakes(fixture.Result.HeldOutPredictions);

        var figures = Figures(Section("mistakes")).ToList();

        Assert.NotEmpty(mistakes);
        Assert.Equal(mistakes.Count, figures.Count);
        foreach (var (figure, mistake) in figures.Zip(mistakes))
        {
            var alts = figure.Descendants().Where(e => e.Name.LocalName == "img").Select(i => (string)i.Attribute("alt")!).ToList();
            Assert.Equal(3, alts.Count);
            Assert.Equal($"looked for {mistake.PredictedLabel}", alts[1]);
            Assert.Equal($"looked for {mistake.TrueLabel}", alts[2]);
        }

        Assert.Contains("occlusion", Section("mistakes").Value);
    }

    [Fact]
    public void SuspectsAreInReportJsonTheCsvAndThePage()
    {
        // The sample has 400 training images x 2048 features: under the automatic limit, so the search ran.
        var search = fixture.Result.Report.LabelErrors;
        Assert.NotNull(search);
        Assert.Equal(400, search.Images);
        Assert.NotEmpty(search.Suspects);
        Assert.Equal(search.Suspects.OrderBy(s => s.GivenLabelProbability).Select(s => s.Path), search.Suspects.Select(s => s.Path));
        Assert.All(search.Suspects, s => Assert.NotEqual(s.GivenLabel, s.PredictedLabel));

        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(Folder, ReportWriter.JsonFileName)));
        Assert.Equal(search.Suspects.Count, json.RootElement.GetProperty("labelErrors").GetProperty("suspects").GetArrayLength());

        var csv = File.ReadAllLines(Path.Combine(Folder, LabelErrorSearchResult.FileName));
        Assert.Equal("path,given_label,predicted_label,given_label_probability,predicted_probability", csv[0]);
        Assert.Equal(search.Suspects.Count + 1, csv.Length);

        var shown = Figures(Section("label-errors")).Select(f => (string)f.Attribute("data-path")!).ToList();
        Assert.Equal(search.Suspects.Take(ExplanationSections.ShownLimit).Select(s => s.Path), shown);
    }

    [Fact]
    public void NearDuplicateSearchRanAndIsReported()
    {
        var search = fixture.Result.Report.NearDuplicates;

        Assert.NotNull(search);
        Assert.Equal(fixture.Result.HeldOutPredictions.Count, search.HeldOutImages);
        Assert.All(search.Pairs, p => Assert.True(p.Similarity >= search.Threshold));
        Assert.Equal(search.Pairs.Count, Figures(Section("near-duplicates")).Count());
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(Folder, ReportWriter.JsonFileName)));
        Assert.Equal(search.Pairs.Count, json.RootElement.GetProperty("nearDuplicates").GetProperty("pairs").GetArrayLength());
    }
}
