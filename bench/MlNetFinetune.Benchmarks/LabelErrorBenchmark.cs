using System.Globalization;
using MlNetFinetune.Explanations;
using MlNetFinetune.Training;

namespace MlNetFinetune.Benchmarks;

/// <summary>
/// <c>explain-label-errors --data &lt;Fashion-MNIST export&gt; [--train-per-class 200] [--test-per-class 50] [--folds 3] [--fold-iterations 40]</c>: copies a
/// real subset (train/ for training, test/ as the held-out folder), moves 5% of the training images into a wrong class
/// folder (seeded), trains with the label-error search on, and prints how many flipped images are among the top k
/// suspects (k = the number flipped) and what the search cost.
/// </summary>
public static class LabelErrorBenchmark
{
    public static int Run(string[] args, TextWriter output)
    {
        int? Take(string name)
        {
            var at = Array.IndexOf(args, name);
            if (at < 0)
            {
                return null;
            }

            var value = int.Parse(args[at + 1], CultureInfo.InvariantCulture);
            args = [.. args[..at], .. args[(at + 2)..]];
            return value;
        }

        var folds = Take("--folds") ?? new ExplanationOptions().Folds;
        var iterations = Take("--fold-iterations") ?? new ExplanationOptions().FoldIterations;
        var options = ExplanationBenchmarkOptions.Parse(args);
        var scratch = Directory.CreateTempSubdirectory("mlnetfinetune-label-errors-").FullName;
        try
        {
            var train = Copy(Path.Combine(options.DataFolder, "train"), Path.Combine(scratch, "train"), options.TrainPerClass);
            var test = Copy(Path.Combine(options.DataFolder, "test"), Path.Combine(scratch, "test"), options.TestPerClass);
            var flipped = LabelFlips.Flip(train, 0.05, seed: 11);
            var training = new TrainingOptions(train, test, Path.Combine(scratch, "out"), options.Workspace ?? Path.Combine(scratch, "workspace"))
            {
                Explanations = new ExplanationOptions(ExplainMistakes: false, FindLabelErrors: true, FindNearDuplicates: false, Folds: folds, FoldIterations: iterations),
            };
            var result = new ImageClassifierTrainer(training).Train();
            var search = result.Report.LabelErrors!;
            var top = search.Suspects.Take(flipped.Count).Select(s => s.Path).ToHashSet(StringComparer.Ordinal);
            var found = flipped.Count(f => top.Contains(f.Path));
            var anywhere = search.Suspects.Select(s => s.Path).ToHashSet(StringComparer.Ordinal);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{search.Images} training images, {flipped.Count} labels flipped; held-out accuracy {result.Report.MicroAccuracy:F3}; {result.Report.Training.Backbone}"));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"flipped images in the top {flipped.Count} suspects: {found} ({(double)found / flipped.Count:P1}); among all {search.Suspects.Count} suspects: {flipped.Count(f => anywhere.Contains(f.Path))}"));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"search: {search.Folds} folds, L2 {search.L2Regularization}, {search.Iterations} iterations per fold head, {search.Seconds:F1} s; head training {result.Report.Training.HeadTrainingSeconds:F1} s"));
            return 0;
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    private static string Copy(string source, string target, int perClass)
    {
        foreach (var classFolder in Directory.GetDirectories(source))
        {
            var folder = Directory.CreateDirectory(Path.Combine(target, Path.GetFileName(classFolder))).FullName;
            foreach (var file in Directory.GetFiles(classFolder).Order(StringComparer.Ordinal).Take(perClass))
            {
                File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
            }
        }

        return target;
    }
}
