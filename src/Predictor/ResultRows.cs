using System.Globalization;
using System.Text;
using System.Text.Json;
using MlNetFinetune.Prediction;

namespace MlNetFinetune.Predictor;

/// <summary>Where batch results go: text or JSON lines on stdout, or a file whose extension picks CSV or JSON lines.</summary>
public enum ResultFormat
{
    Text,
    JsonLines,
    Csv,
}

/// <summary>One line per image in each <see cref="ResultFormat"/>; an image that could not be read gets a row with its error.</summary>
public static class ResultRows
{
    private static readonly JsonSerializerOptions s_json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    /// <summary>The format of a result file; throws <see cref="UserInputException"/> for an extension it does not know.</summary>
    public static ResultFormat FormatOfFile(string path) => Path.GetExtension(path).ToLowerInvariant() switch
    {
        ".csv" => ResultFormat.Csv,
        ".jsonl" => ResultFormat.JsonLines,
        _ => throw new UserInputException($"--output {path}: name the file .csv or .jsonl (JSON lines)"),
    };

    /// <summary>The CSV header: path, label, confidence, then a label and score column per rank, then the error.</summary>
    public static string CsvHeader(int top) =>
        "path,label,confidence," + string.Concat(Enumerable.Range(1, top).Select(rank => $"top{rank}_label,top{rank}_score,")) + "error";

    /// <summary>A row for <paramref name="file"/>: its result, or <paramref name="problem"/> when it has none.</summary>
    public static string Row(ResultFormat format, int top, string file, ClassificationResult? result, string? problem) => (format, result) switch
    {
        (ResultFormat.Text, not null) =>
            Invariant($"{file}\t{result.Label}\t{result.Confidence:F4}\t") + string.Join("  ", result.Top.Select(s => Invariant($"{s.Label}={s.Score:F4}"))),
        (ResultFormat.JsonLines, not null) =>
            JsonSerializer.Serialize(new { path = file, label = result.Label, confidence = result.Confidence, top = result.Top }, s_json),
        (ResultFormat.JsonLines, null) => JsonSerializer.Serialize(new { path = file, error = problem }, s_json),
        (ResultFormat.Csv, _) => CsvRow(top, file, result, problem),
        _ => throw new ArgumentException($"{format} has no row for an error", nameof(format)),
    };

    private static string CsvRow(int top, string file, ClassificationResult? result, string? problem)
    {
        var fields = new List<string> { file, result?.Label ?? "", Number(result?.Confidence) };
        for (var rank = 0; rank < top; rank++)
        {
            var score = result is not null && rank < result.Top.Count ? result.Top[rank] : null;
            fields.Add(score?.Label ?? "");
            fields.Add(Number(score?.Score));
        }

        fields.Add(problem ?? "");
        return string.Join(',', fields.Select(Quote));
    }

    // Shortest text that reads back as the same float, so a CSV carries exactly what the classifier computed.
    private static string Number(float? value) => value?.ToString(CultureInfo.InvariantCulture) ?? "";

    private static string Quote(string field) => field.AsSpan().IndexOfAny(",\"\r\n") < 0
        ? field
        : new StringBuilder("\"").Append(field.Replace("\"", "\"\"", StringComparison.Ordinal)).Append('"').ToString();

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
