using System.Diagnostics;
using System.Globalization;
using MlNetFinetune.Explanations;
using MlNetFinetune.Training;

namespace MlNetFinetune.Benchmarks;

/// <summary>
/// <c>explain-faithfulness</c>: how often the occlusion map's hottest cell lies in the quadrant where the item was
/// pasted, for every patch size and fill, on correctly classified held-out images; and the time per explanation.
/// </summary>
public static class FaithfulnessBenchmark
{
    public static int Run(string[] args, TextWriter output)
    {
        var options = ExplanationBenchmarkOptions.Parse(args);
        var scratch = Directory.CreateTempSubdirectory("mlnetfinetune-faithfulness-").FullName;
        try
        {
            var train = QuadrantImages.Write(Path.Combine(options.DataFolder, "train"), Path.Combine(scratch, "train"), options.TrainPerClass, seed: 1, options.Background);
            var test = QuadrantImages.Write(Path.Combine(options.DataFolder, "test"), Path.Combine(scratch, "test"), options.TestPerClass, seed: 2, options.Background);
            var training = new TrainingOptions(Path.Combine(scratch, "train"), Path.Combine(scratch, "test"), Path.Combine(scratch, "out"), options.Workspace ?? Path.Combine(scratch, "workspace"))
            {
                Explanations = ExplanationOptions.None,
            };
            var result = new ImageClassifierTrainer(training).Train();
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{train.Count} training and {test.Count} held-out images on a {options.Background} canvas; backbone {result.Backbone.Describe()}; held-out accuracy {result.Report.MicroAccuracy:F3}"));
            output.WriteLine("grid | patch cells | fill | correct images | hottest cell in the item's quadrant | ms per explanation");
            foreach (var grid in options.Grids)
            {
                foreach (var patch in options.Patches.Where(p => p < grid))
                {
                    foreach (var fill in options.Fills)
                    {
                        var occlusion = new OcclusionOptions(grid, patch, fill);
                        using var explainer = ModelExplainer.Load(result.ModelPath, occlusion);
                        int correct = 0, hits = 0;
                        var clock = Stopwatch.StartNew();
                        foreach (var image in test)
                        {
                            var explanation = explainer.Explain(File.ReadAllBytes(image.Path), image.Path);
                            if (explanation.Label != image.Label)
                            {
                                continue;
                            }

                            correct++;
                            var (row, column) = explanation.Map.Hottest(explanation.Map.PredictedIndex);
                            hits += QuadrantImages.QuadrantOf(row, column, grid) == image.Quadrant ? 1 : 0;
                        }

                        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                            $"{grid} | {patch} | {fill} | {correct} | {(double)hits / Math.Max(1, correct):P1} | {clock.Elapsed.TotalMilliseconds / test.Count:F0}"));
                    }
                }
            }

            return 0;
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }
}

/// <summary>Options of the explanation benchmarks.</summary>
/// <param name="DataFolder">A Fashion-MNIST export (train/ and test/ class folders), or any folder of class folders for the cost and label-error modes.</param>
internal sealed record ExplanationBenchmarkOptions(string DataFolder)
{
    public string? Workspace { get; init; }

    public int TrainPerClass { get; init; } = 100;

    public int TestPerClass { get; init; } = 20;

    public QuadrantBackground Background { get; init; } = QuadrantBackground.Black;

    public IReadOnlyList<int> Grids { get; init; } = [8];

    public IReadOnlyList<int> Patches { get; init; } = [1, 2, 3, 4];

    public IReadOnlyList<OcclusionFill> Fills { get; init; } = Enum.GetValues<OcclusionFill>();

    public static ExplanationBenchmarkOptions Parse(string[] args)
    {
        var options = new ExplanationBenchmarkOptions("/tmp/fashion-mnist");
        for (var i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new UserInputException($"{args[i]}: missing value");
            int Number(string text) => int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0
                ? n
                : throw new UserInputException($"{args[i - 1]} {text}: expected a whole number above 0");
            options = args[i] switch
            {
                "--data" => options with { DataFolder = Value() },
                "--workspace" => options with { Workspace = Value() },
                "--train-per-class" => options with { TrainPerClass = Number(Value()) },
                "--test-per-class" => options with { TestPerClass = Number(Value()) },
                "--background" => options with { Background = Enum.Parse<QuadrantBackground>(Value(), ignoreCase: true) },
                "--grids" => options with { Grids = [.. Value().Split(',').Select(Number)] },
                "--patches" => options with { Patches = [.. Value().Split(',').Select(Number)] },
                "--fills" => options with { Fills = [.. Value().Split(',').Select(f => Enum.Parse<OcclusionFill>(f, ignoreCase: true))] },
                _ => throw new UserInputException($"{args[i]}: unknown option"),
            };
        }

        return options;
    }
}
