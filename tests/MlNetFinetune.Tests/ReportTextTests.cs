using System.Xml.Linq;
using MlNetFinetune.Data;
using MlNetFinetune.Evaluation;

namespace MlNetFinetune.Tests;

/// <summary>Class folder names are user text: line breaks, separators and emoji must not break any report.</summary>
public sealed class ReportTextTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mlnetfinetune-report-text-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Fact]
    public void LineBreaksSeparatorsAndEmojiInClassNamesKeepEveryReportIntact()
    {
        // Given class names with a line break, a '|' and ',' and '"', and an emoji whose surrogate pair spans characters 22-23
        // (before: the CSV and Markdown rows broke, and the SVG writer crashed on half an emoji after the model was saved)
        string[] names = ["line\nbreak", "pipe | comma, \"quote\"", "twenty-one characters🙂 and more"];
        var predictions = new List<HeldOutPrediction>
        {
            new("a.png", names[0], names[1], [0.2f, 0.7f, 0.1f]),
            new("b,\n.png", names[1], names[1], [0.1f, 0.8f, 0.1f]),
            new("c.png", names[2], names[2], [0.1f, 0.1f, 0.8f]),
        };
        var training = new TrainingSummary("backbone", 512, 10, 2, predictions.Count, "test", "softmax", 0.1f, [], 0, 0, 0, 0, 0, 1);
        var report = HeldOutEvaluator.Evaluate(names, predictions, [new SkippedFile("x|\n.png", "empty file (0 bytes)")], training);

        // When
        ReportWriter.WriteAll(report, predictions, _folder);
        HtmlReportWriter.Write(report, predictions, _folder);

        // Then the CSV has a header and three records, each read back whole
        var records = ReadCsv(File.ReadAllText(Path.Combine(_folder, ReportWriter.PredictionsFileName)));
        Assert.Equal(4, records.Count);
        Assert.Equal(["b,\n.png", names[1], names[1], "0.800000"], records[2]);

        // and each Markdown table row is one line with as many cells as the header
        var markdown = File.ReadAllLines(Path.Combine(_folder, ReportWriter.MarkdownFileName));
        var perClass = markdown.SkipWhile(l => !l.StartsWith("| class |", StringComparison.Ordinal)).TakeWhile(l => l.StartsWith('|')).ToList();
        Assert.Equal(2 + names.Length, perClass.Count);
        Assert.All(perClass, row => Assert.Equal(6, row.Replace("\\|", "", StringComparison.Ordinal).Count(c => c == '|')));

        // and the HTML page is well-formed with whole characters in the plots
        var page = XDocument.Parse(File.ReadAllText(Path.Combine(_folder, HtmlReportWriter.FileName)));
        Assert.DoesNotContain(page.Descendants().Where(e => e.Name.LocalName == "text").Select(t => t.Value), t => t.Any(char.IsSurrogate) && !IsWellFormed(t));
    }

    private static bool IsWellFormed(string text)
    {
        for (var i = 0; i < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]) && (i + 1 >= text.Length || !char.IsLowSurrogate(text[++i])))
            {
                return false;
            }

            if (char.IsLowSurrogate(text[i]) && (i == 0 || !char.IsHighSurrogate(text[i - 1])))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>A small RFC 4180 reader: quoted fields may hold commas, quotes (doubled) and line breaks.</summary>
    private static List<List<string>> ReadCsv(string text)
    {
        var records = new List<List<string>>();
        var record = new List<string>();
        var field = new System.Text.StringBuilder();
        var quoted = false;
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (quoted)
            {
                if (c == '"' && i + 1 < text.Length && text[i + 1] == '"')
                {
                    field.Append('"');
                    i++;
                }
                else if (c == '"')
                {
                    quoted = false;
                }
                else
                {
                    field.Append(c);
                }
            }
            else if (c == '"')
            {
                quoted = true;
            }
            else if (c == ',')
            {
                record.Add(field.ToString());
                field.Clear();
            }
            else if (c == '\n')
            {
                record.Add(field.ToString());
                field.Clear();
                records.Add(record);
                record = [];
            }
            else
            {
                field.Append(c);
            }
        }

        return records;
    }
}
