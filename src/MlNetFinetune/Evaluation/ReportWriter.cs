using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace MlNetFinetune.Evaluation;

/// <summary>Writes the evaluation as report.json (for programs) and report.md (for people).</summary>
public static class ReportWriter
{
    /// <summary>The report for programs.</summary>
    public const string JsonFileName = "report.json";

    /// <summary>The report for people.</summary>
    public const string MarkdownFileName = "report.md";

    /// <summary>How reports and manifests are written: camelCase, indented, nulls left out, text unescaped.</summary>
    public static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,

        // Reports are read by people too: keep '+' in "s3g2+s4" and non-ASCII class names as they are.
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>Name of the held-out predictions file.</summary>
    public const string PredictionsFileName = "heldout-predictions.csv";

    /// <summary>Writes report.json, report.md and heldout-predictions.csv into <paramref name="folder"/>, each atomically.</summary>
    public static void WriteAll(EvaluationReport report, IReadOnlyList<HeldOutPrediction> predictions, string folder)
    {
        Directory.CreateDirectory(folder);
        AtomicFile.WriteAllText(Path.Combine(folder, JsonFileName), ToJson(report));
        AtomicFile.WriteAllText(Path.Combine(folder, MarkdownFileName), ToMarkdown(report));
        AtomicFile.WriteAllText(Path.Combine(folder, PredictionsFileName), PredictionsCsv(predictions));
        if (report.LabelErrors is { } labelErrors)
        {
            AtomicFile.WriteAllText(Path.Combine(folder, Explanations.LabelErrorSearchResult.FileName), SuspectsCsv(labelErrors.Suspects));
        }
    }

    /// <summary>One row per suspected label error, least likely label first: path, given and predicted label, their out-of-fold probabilities.</summary>
    public static string SuspectsCsv(IEnumerable<Explanations.SuspectedLabelError> suspects)
    {
        var csv = new StringBuilder("path,given_label,predicted_label,given_label_probability,predicted_probability\n");
        foreach (var s in suspects)
        {
            csv.Append(CsvField(s.Path)).Append(',').Append(CsvField(s.GivenLabel)).Append(',').Append(CsvField(s.PredictedLabel)).Append(',')
                .Append(s.GivenLabelProbability.ToString("F6", CultureInfo.InvariantCulture)).Append(',')
                .Append(s.PredictedProbability.ToString("F6", CultureInfo.InvariantCulture)).Append('\n');
        }

        return csv.ToString();
    }

    /// <summary>One row per held-out image: path, true label, predicted label, confidence (RFC 4180 quoting).</summary>
    public static string PredictionsCsv(IEnumerable<HeldOutPrediction> predictions)
    {
        var csv = new StringBuilder("path,true_label,predicted_label,confidence\n");
        foreach (var p in predictions)
        {
            csv.Append(CsvField(p.Path)).Append(',').Append(CsvField(p.TrueLabel)).Append(',').Append(CsvField(p.PredictedLabel)).Append(',')
                .Append(p.Scores.Max().ToString("F6", CultureInfo.InvariantCulture)).Append('\n');
        }

        return csv.ToString();
    }

    /// <summary>A CSV field, quoted when it holds a comma, a quote or a line break (a class folder's name can).</summary>
    public static string CsvField(string field) => field.AsSpan().IndexOfAny(",\"\r\n") < 0
        ? field
        : $"\"{field.Replace("\"", "\"\"", StringComparison.Ordinal)}\"";

    /// <summary>The report as report.json holds it.</summary>
    public static string ToJson(EvaluationReport report) => JsonSerializer.Serialize(report, JsonOptions);

    /// <summary>Reads a report.json; throws <see cref="InvalidDataException"/> when it is empty.</summary>
    public static EvaluationReport FromJson(string json) =>
        JsonSerializer.Deserialize<EvaluationReport>(json, JsonOptions) ?? throw new InvalidDataException("empty report");

    /// <summary>The report as report.md holds it: tables a person can read.</summary>
    public static string ToMarkdown(EvaluationReport report)
    {
        var t = report.Training;
        var md = new StringBuilder();
        md.AppendLine("# Held-out evaluation");
        md.AppendLine();
        md.AppendLine(Invariant($"Backbone `{t.Backbone}` ({t.FeatureSize} bottleneck features), head: {t.Head}, L2 = {t.L2Regularization}."));
        md.AppendLine(Invariant($"Images: {t.TrainImages} train, {t.ValidationImages} validation, {t.HeldOutImages} held-out ({t.HeldOutSource}); seed {t.Seed}."));
        md.AppendLine();
        md.AppendLine("| metric | value |");
        md.AppendLine("| --- | --- |");
        md.AppendLine(Invariant($"| accuracy (micro) | {report.MicroAccuracy:F4} |"));
        md.AppendLine(Invariant($"| accuracy (macro) | {report.MacroAccuracy:F4} |"));
        md.AppendLine(Invariant($"| log-loss | {report.LogLoss:F4} |"));
        md.AppendLine(Invariant($"| skipped files | {report.SkippedFiles.Count} |"));
        md.AppendLine();
        md.AppendLine("## Per class");
        md.AppendLine();
        md.AppendLine("| class | precision | recall | F1 | support |");
        md.AppendLine("| --- | ---: | ---: | ---: | ---: |");
        foreach (var c in report.Classes)
        {
            md.AppendLine(Invariant($"| {Cell(c.Name)} | {c.Precision:F3} | {c.Recall:F3} | {c.F1:F3} | {c.Support} |"));
        }

        md.AppendLine();
        md.AppendLine("## Confusion matrix (rows: true class, columns: predicted class)");
        md.AppendLine();
        md.AppendLine("| true \\ predicted | " + string.Join(" | ", report.ClassNames.Select(Cell)) + " |");
        md.AppendLine("| --- |" + string.Concat(report.ClassNames.Select(_ => " ---: |")));
        for (var i = 0; i < report.ClassNames.Count; i++)
        {
            md.AppendLine($"| {Cell(report.ClassNames[i])} | " + string.Join(" | ", report.ConfusionMatrix[i]) + " |");
        }

        if (t.HeadCandidates.Count > 0)
        {
            md.AppendLine();
            md.AppendLine("## Head candidates (validation split)");
            md.AppendLine();
            md.AppendLine("| head | L2 | validation accuracy | validation log-loss | best epoch / epochs run | chosen |");
            md.AppendLine("| --- | ---: | ---: | ---: | ---: | --- |");
            foreach (var c in t.HeadCandidates)
            {
                var chosen = t.IsChosen(c) ? "yes" : string.Empty;
                md.AppendLine(Invariant($"| {c.Head} | {c.L2Regularization} | {c.ValidationAccuracy:F4} | {c.ValidationLogLoss:F4} | {c.BestEpoch} / {c.EpochsRun} | {chosen} |"));
            }
        }

        md.AppendLine();
        md.AppendLine("## Featurization");
        md.AppendLine();
        md.AppendLine(Invariant($"{t.FeaturesComputed} images through the backbone ({t.FeaturizationImagesPerSecond:F1} images/s, {t.FeaturizationSeconds:F1} s), {t.FeaturesFromCache} from the bottleneck cache; head trained in {t.HeadTrainingSeconds:F1} s."));
        if (report.SkippedFiles.Count > 0)
        {
            md.AppendLine();
            md.AppendLine("## Skipped files");
            md.AppendLine();
            foreach (var s in report.SkippedFiles)
            {
                md.AppendLine($"- {Code(s.Path)}: {Cell(s.Reason)}");
            }
        }

        if (report.Duplicates is { Any: true } d)
        {
            md.AppendLine();
            md.AppendLine("## Byte-identical images");
            md.AppendLine();
            md.AppendLine(Invariant($"- held-out images also among training or validation images: {d.HeldOutInTraining} ({(d.HeldOutExcluded ? "left out of the held-out score" : "kept in the held-out score")})"));
            md.AppendLine(Invariant($"- validation images also among training images: {d.ValidationInTraining} (left out of validation)"));
            md.AppendLine(Invariant($"- contents found under more than one label: {d.ConflictingLabels}"));
            foreach (var pair in d.Examples)
            {
                md.AppendLine($"- {Code(pair.Path)} ({Cell(pair.Label)}) = {Code(pair.SameAs)} ({Cell(pair.SameAsLabel)})");
            }
        }

        if (report.LabelErrors is { } labelErrors)
        {
            md.AppendLine();
            md.AppendLine("## Suspected label errors");
            md.AppendLine();
            md.AppendLine(Invariant($"{labelErrors.Suspects.Count} of {labelErrors.Images} training images are predicted as another class by a head trained without them ({labelErrors.Folds} folds); all are in `{Explanations.LabelErrorSearchResult.FileName}`. The least likely labels:"));
            md.AppendLine();
            foreach (var suspect in labelErrors.Suspects.Take(10))
            {
                md.AppendLine(Invariant($"- {Code(suspect.Path)}: labelled {Cell(suspect.GivenLabel)} (p {suspect.GivenLabelProbability:F3}), looks like {Cell(suspect.PredictedLabel)} (p {suspect.PredictedProbability:F3})"));
            }
        }

        if (report.NearDuplicates is { } near)
        {
            md.AppendLine();
            md.AppendLine("## Near duplicates");
            md.AppendLine();
            var without = near.AccuracyWithout is double accuracy ? Invariant($"; held-out accuracy without them {accuracy:F4}") : "";
            md.AppendLine(Invariant($"{near.Pairs.Count} of {near.HeldOutImages} held-out images have a training image with feature similarity of at least {near.Threshold}{without}."));
            md.AppendLine();
            foreach (var pair in near.Pairs.Take(10))
            {
                md.AppendLine(Invariant($"- {Code(pair.HeldOutPath)} ({Cell(pair.HeldOutLabel)}) ~ {Code(pair.TrainingPath)} ({Cell(pair.TrainingLabel)}): {pair.Similarity:F3}"));
            }
        }

        if (report.Ignored.Count > 0)
        {
            md.AppendLine();
            md.AppendLine("## Ignored entries");
            md.AppendLine();
            foreach (var group in report.Ignored.GroupBy(i => i.Reason))
            {
                md.AppendLine(Invariant($"- {group.Key}: {group.Count()}, e.g. {Code(group.First().Path)}"));
            }
        }

        return md.ToString();
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    /// <summary>Text for a Markdown table cell or list item: a line break or a '|' in a class name must not end the row.</summary>
    private static string Cell(string text) => text.Replace("\r\n", " ", StringComparison.Ordinal).Replace('\n', ' ').Replace('\r', ' ').Replace("|", "\\|", StringComparison.Ordinal);

    /// <summary>Inline code that survives backticks and line breaks in the text.</summary>
    private static string Code(string text) => $"`` {Cell(text).Replace("`", "'", StringComparison.Ordinal)} ``";
}
