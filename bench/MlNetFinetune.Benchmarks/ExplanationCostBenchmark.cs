using System.Diagnostics;
using System.Globalization;
using MlNetFinetune.Explanations;
using MlNetFinetune.Training;

namespace MlNetFinetune.Benchmarks;

/// <summary>
/// <c>explain-cost --data &lt;class folders&gt; [--repeats 1] [--skip-cold]</c>: wall time of the default training run
/// without explanations and with them (heat maps of the gallery, label-error search, near duplicates), side by side in
/// one process after a small warm-up run (so that neither pays for JIT compilation). Per repeat: both cold (each on
/// an empty bottleneck cache, order alternating between repeats), then four warm runs on one cache (explained, none,
/// none, explained) so that a drifting load falls on both alike. Prints each run and the mean added share.
/// </summary>
public static class ExplanationCostBenchmark
{
    public static int Run(string[] args, TextWriter output)
    {
        var repeatsAt = Array.IndexOf(args, "--repeats");
        var repeats = repeatsAt >= 0 ? int.Parse(args[repeatsAt + 1], CultureInfo.InvariantCulture) : 1;
        var skipCold = args.Contains("--skip-cold");
        var rest = args.Where((a, i) => a != "--skip-cold" && a != "--repeats" && (i == 0 || args[i - 1] != "--repeats")).ToArray();
        var options = ExplanationBenchmarkOptions.Parse(rest);
        var scratch = Directory.CreateTempSubdirectory("mlnetfinetune-cost-").FullName;
        try
        {
            WarmUp(options.DataFolder, scratch);
            var times = new Dictionary<(bool Explained, bool Warm), List<double>>();
            for (var r = 0; r < repeats; r++)
            {
                var shared = Path.Combine(scratch, $"workspace-{r}");
                if (!skipCold)
                {
                    foreach (var explained in r % 2 == 0 ? new[] { false, true } : [true, false])
                    {
                        var workspace = explained ? shared : Path.Combine(scratch, $"workspace-{r}-none");
                        Time(options.DataFolder, scratch, workspace, explained, warm: false, times, output);
                    }
                }

                foreach (var explained in new[] { true, false, false, true })
                {
                    Time(options.DataFolder, scratch, shared, explained, warm: true, times, output);
                }
            }

            foreach (var warm in new[] { false, true }.Where(w => w || !skipCold))
            {
                var none = times[(false, warm)].Average();
                var explained = times[(true, warm)].Average();
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{(warm ? "warm" : "cold")} cache: {none:F1} s without explanations, {explained:F1} s with (means of {times[(false, warm)].Count} and {times[(true, warm)].Count}): +{(explained / none) - 1:P0}"));
            }

            return 0;
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    private static void Time(string data, string scratch, string workspace, bool explained, bool warm, Dictionary<(bool, bool), List<double>> times, TextWriter output)
    {
        var training = new TrainingOptions(data, OutputFolder: Path.Combine(scratch, "out"), Workspace: workspace)
        {
            Explanations = explained ? new ExplanationOptions() : ExplanationOptions.None,
        };
        var steps = new List<string>();
        var clock = Stopwatch.StartNew();
        var result = new ImageClassifierTrainer(training).Train(log: steps.Add);
        var seconds = clock.Elapsed.TotalSeconds;
        if (!times.TryGetValue((explained, warm), out var list))
        {
            times[(explained, warm)] = list = [];
        }

        list.Add(seconds);
        var explainedSteps = string.Join("; ", steps.Where(s => s.StartsWith("Heat maps", StringComparison.Ordinal) || s.StartsWith("Label-error", StringComparison.Ordinal) || s.StartsWith("Near duplicates", StringComparison.Ordinal)));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{(explained ? "explained" : "none     ")} {(warm ? "warm" : "cold")}: {seconds:F1} s (featurization {result.Featurization.Elapsed.TotalSeconds:F1} s, head {result.Report.Training.HeadTrainingSeconds:F1} s) {explainedSteps}"));
    }

    /// <summary>Trains once on 10 images of two classes with everything on, so that JIT compilation is paid before the clock runs.</summary>
    private static void WarmUp(string data, string scratch)
    {
        var folder = Path.Combine(scratch, "warm-up");
        foreach (var classFolder in Directory.GetDirectories(data).Order(StringComparer.Ordinal).Take(2))
        {
            var target = Directory.CreateDirectory(Path.Combine(folder, Path.GetFileName(classFolder))).FullName;
            foreach (var file in Directory.GetFiles(classFolder).Order(StringComparer.Ordinal).Take(10))
            {
                File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
            }
        }

        new ImageClassifierTrainer(new TrainingOptions(folder, OutputFolder: Path.Combine(scratch, "warm-up-out"), Workspace: Path.Combine(scratch, "warm-up-workspace"))
        {
            Explanations = new ExplanationOptions(FindLabelErrors: true),
        }).Train();
    }
}
