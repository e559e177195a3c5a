using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.ML;
using MlNetFinetune.Backbones;
using MlNetFinetune.Data;
using MlNetFinetune.Training.FineTuning;

namespace MlNetFinetune.Benchmarks;

/// <summary>
/// Fine-tuning speed side by side in one run: <see cref="FineTuner"/> (frozen part once per image, then train steps on
/// the cached maps) against PyTorch's usual recipe (scripts/finetune-reference.py bench: the frozen part recomputed
/// every step, batch norm frozen), on the same images, weights, input size, batch, trained stages and epochs,
/// alternating so that a busy machine slows both alike. Then a per-op profile of the ONNX Runtime train step.
/// </summary>
public static class FineTuneSpeed
{
    public static int Run(FineTuneBenchOptions options, TextWriter output)
    {
        var folder = ImageFolder.Scan(options.DataFolder);
        var classes = folder.Classes.ToList();
        var files = folder.Images.GroupBy(i => i.Label)
            .SelectMany(g => g.Select((image, index) => (image, index)))
            .OrderBy(p => p.index).ThenBy(p => p.image.Label, StringComparer.Ordinal)
            .Take(options.Images)
            .Select(p => (p.image.Path, classes.IndexOf(p.image.Label))).ToList();
        var images = LabelledImages.FromFiles(new MLContext(1), files, options.ImageSize).ToList();
        var backbone = new BackboneOptions(options.ImageSize, options.Features);
        var fine = options.FineTune with { Patience = 0 };
        var script = FindScript();
        var scratch = Directory.CreateTempSubdirectory("mlnetfinetune-finetune-bench-").FullName;
        try
        {
            var pixelFile = Path.Combine(scratch, "pixels.u8");
            var labelFile = Path.Combine(scratch, "labels.i64");
            File.WriteAllBytes(pixelFile, [.. images.SelectMany(i => i.Pixels.Select(v => (byte)v))]);
            File.WriteAllBytes(labelFile, MemoryMarshal.AsBytes(images.Select(i => (long)i.Label).ToArray().AsSpan()).ToArray());
            output.WriteLine(Invariant($"{images.Count} images from {options.DataFolder}, {Environment.ProcessorCount} cores; {options.Describe()}"));
            output.WriteLine("run  ONNX Runtime end to end (cache + train)  train only  |  PyTorch (recompute)  |  ratio end to end");
            var ratios = new List<double>();
            for (var repeat = 1; repeat <= options.Repeats; repeat++)
            {
                var clock = Stopwatch.StartNew();
                var result = new FineTuner(fine, backbone) { MirroredViews = options.MirroredViews }.Run(images, [], classes.Count);
                var ortSeconds = clock.Elapsed.TotalSeconds;
                var ortRate = images.Count * fine.Epochs / ortSeconds;
                var trainRate = result.History.Average(h => h.ImagesPerSecond);
                var torch = RunPyTorch(options, script, pixelFile, labelFile, classes.Count);
                var torchRate = images.Count * fine.Epochs / torch.Sum();
                ratios.Add(ortRate / torchRate);
                output.WriteLine(Invariant(
                    $"{repeat,3}  {ortRate,8:F1} images/s (cache {result.CacheSeconds:F1} s)          {trainRate,6:F1}     |  {torchRate,6:F1} images/s      |  {ortRate / torchRate:F2}x"));
            }

            if (ratios.Count > 0)
            {
                ratios.Sort();
                output.WriteLine(Invariant($"median ratio (ONNX Runtime / PyTorch images/s, end to end): {ratios[ratios.Count / 2]:F2}x"));
            }

            output.WriteLine(Invariant($"peak memory of this process (VmHWM): {PeakMemoryMegabytes():F0} MB"));
            Profile(images, backbone, fine, scratch, output);
            return 0;
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    /// <summary>One epoch with ONNX Runtime profiling on; the per-op kernel times of the train steps after two warm-up steps.</summary>
    private static void Profile(List<LabelledPixels> images, BackboneOptions backbone, FineTuneOptions fine, string scratch, TextWriter output)
    {
        var sample = images.Take(fine.BatchSize * 6).ToList();
        new FineTuner(fine with { Epochs = 1 }, backbone) { ProfilePrefix = Path.Combine(scratch, "profile") }.Run(sample, [], 10);
        var file = Directory.GetFiles(scratch, "profile*.json").Single();
        var summary = OrtProfile.Summarize(file, skipRuns: 2);
        output.WriteLine(Invariant($"per-op time of one train step (batch {fine.BatchSize}, mean of {summary.Runs} steps after 2 warm-up steps): {summary.StepMilliseconds:F1} ms a step"));
        foreach (var (op, milliseconds, count) in summary.Ops.Take(14))
        {
            output.WriteLine(Invariant($"  {op,-14} {milliseconds,8:F2} ms  {100 * milliseconds / summary.KernelMilliseconds,5:F1}%  ({count} nodes)"));
        }
    }

    private static List<double> RunPyTorch(FineTuneBenchOptions options, string script, string pixels, string labels, int classes)
    {
        var f = options.FineTune;
        var start = new ProcessStartInfo(options.Python) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in new[]
        {
            script, "bench", "--model-dir", AppContext.BaseDirectory, "--pixels", pixels, "--labels", labels,
            "--image-size", Invariant($"{options.ImageSize}"), "--stages", Invariant($"{f.Stages}"), "--features", options.Features,
            "--classes", Invariant($"{classes}"), "--learning-rate", Invariant($"{f.LearningRate}"), "--head-multiple", Invariant($"{f.HeadLearningRateMultiple}"),
            "--weight-decay", Invariant($"{f.WeightDecay}"), "--batch-size", Invariant($"{f.BatchSize}"), "--epochs", Invariant($"{f.Epochs}"),
            "--threads", Invariant($"{Environment.ProcessorCount}"),
        })
        {
            start.ArgumentList.Add(argument);
        }

        if (f.Augment != Augmentation.None)
        {
            start.ArgumentList.Add("--flip");
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"{options.Python} did not start");
        var errors = process.StandardError.ReadToEndAsync();
        var lines = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"PyTorch benchmark failed ({process.ExitCode}): {errors.Result}");
        }

        using var json = JsonDocument.Parse(lines.Trim().Split('\n')[^1]);
        return [.. json.RootElement.GetProperty("epochSeconds").EnumerateArray().Select(e => e.GetDouble())];
    }

    private static string FindScript()
    {
        foreach (var start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
        {
            for (var directory = new DirectoryInfo(start); directory is not null; directory = directory.Parent)
            {
                var candidate = Path.Combine(directory.FullName, "scripts", "finetune-reference.py");
                if (File.Exists(candidate))
                {
                    return candidate;
                }
            }
        }

        throw new UserInputException("scripts/finetune-reference.py not found above the current folder; run from the repository");
    }

    internal static double PeakMemoryMegabytes()
    {
        var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        return line is null ? double.NaN : double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024;
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
