using System.Text.Json;

namespace MlNetFinetune.Benchmarks;

/// <summary>Per-op totals of an ONNX Runtime profile (the JSON trace a session writes with profiling on).</summary>
public sealed record OrtProfile(int Runs, double StepMilliseconds, double KernelMilliseconds, IReadOnlyList<(string Op, double Milliseconds, int Count)> Ops)
{
    /// <summary>Averages over the session runs after the first <paramref name="skipRuns"/>: kernel time per op type, largest first.</summary>
    public static OrtProfile Summarize(string path, int skipRuns)
    {
        using var json = JsonDocument.Parse(File.ReadAllText(path));
        var events = json.RootElement.EnumerateArray().ToList();
        var runs = events.Where(e => Category(e) == "Session" && e.GetProperty("name").GetString() == "model_run")
            .Select(e => (Start: e.GetProperty("ts").GetInt64(), Duration: e.GetProperty("dur").GetInt64())).OrderBy(r => r.Start).Skip(skipRuns).ToList();
        if (runs.Count == 0)
        {
            throw new InvalidOperationException($"{path}: fewer than {skipRuns + 1} session runs profiled");
        }

        var first = runs[0].Start;
        var kernels = events.Where(e => Category(e) == "Node" && e.GetProperty("ts").GetInt64() >= first
                && e.GetProperty("name").GetString()!.EndsWith("_kernel_time", StringComparison.Ordinal))
            .Select(e => (Op: e.GetProperty("args").GetProperty("op_name").GetString()!, Duration: e.GetProperty("dur").GetInt64()))
            .ToList();
        var ops = kernels.GroupBy(k => k.Op)
            .Select(g => (g.Key, g.Sum(k => k.Duration) / 1000.0 / runs.Count, g.Count() / runs.Count))
            .OrderByDescending(o => o.Item2).ToList();
        return new OrtProfile(runs.Count, runs.Average(r => r.Duration) / 1000.0, kernels.Sum(k => k.Duration) / 1000.0 / runs.Count, ops);
    }

    private static string? Category(JsonElement e) => e.TryGetProperty("cat", out var c) ? c.GetString() : null;
}
