using System.Globalization;
using MlNetFinetune.Evaluation;
using Spectre.Console;

namespace MlNetFinetune.Trainer;

/// <summary>The held-out evaluation as console tables.</summary>
public static class ReportConsole
{
    public static void Print(IAnsiConsole console, EvaluationReport report)
    {
        var t = report.Training;
        console.WriteLine();
        // A rule spans the console's width, which is unbounded when output is redirected.
        if (console.Profile.Capabilities.Interactive)
        {
            console.Write(new Rule("[bold]Held-out evaluation[/]").LeftJustified());
        }
        else
        {
            console.MarkupLine("[bold]Held-out evaluation[/]");
        }

        console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{t.HeldOutImages} held-out images ({t.HeldOutSource}); trained on {t.TrainImages} + {t.ValidationImages} validation; {t.Backbone}, head {t.Head}, L2 = {t.L2Regularization}"));

        var summary = new Table().AddColumns("metric", "value");
        summary.AddRow("accuracy (micro)", F(report.MicroAccuracy, 4));
        summary.AddRow("accuracy (macro)", F(report.MacroAccuracy, 4));
        summary.AddRow("log-loss", F(report.LogLoss, 4));
        summary.AddRow("skipped files", report.SkippedFiles.Count.ToString(CultureInfo.InvariantCulture));
        console.Write(summary);

        var classes = new Table().AddColumns("class", "precision", "recall", "F1", "support");
        foreach (var column in classes.Columns.Skip(1))
        {
            column.RightAligned();
        }

        foreach (var c in report.Classes)
        {
            classes.AddRow(Markup.Escape(c.Name), F(c.Precision, 3), F(c.Recall, 3), F(c.F1, 3), c.Support.ToString(CultureInfo.InvariantCulture));
        }

        console.Write(classes);

        // Columns are numbered so that ten or more classes fit a terminal; the rows carry the names. The caption is a
        // line of its own: as the table's title it would wrap at the table's width.
        console.WriteLine("confusion matrix (rows: true class, columns: predicted class #)");
        var matrix = new Table();
        matrix.AddColumn("# true class");
        for (var j = 0; j < report.ClassNames.Count; j++)
        {
            matrix.AddColumn(new TableColumn(j.ToString(CultureInfo.InvariantCulture)).RightAligned());
        }

        for (var i = 0; i < report.ClassNames.Count; i++)
        {
            matrix.AddRow([$"{i} {Markup.Escape(report.ClassNames[i])}", .. report.ConfusionMatrix[i].Select((n, j) =>
                i == j ? $"[green]{n}[/]" : n == 0 ? "[grey]0[/]" : $"[red]{n}[/]")]);
        }

        console.Write(matrix);
        foreach (var s in report.SkippedFiles)
        {
            console.MarkupLineInterpolated($"[yellow]skipped[/] {s.Path}: {s.Reason}");
        }
    }

    private static string F(double value, int digits) => value.ToString("F" + digits, CultureInfo.InvariantCulture);
}
