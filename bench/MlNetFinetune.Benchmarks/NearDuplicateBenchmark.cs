using System.Globalization;
using Microsoft.ML;
using MlNetFinetune.Backbones;
using MlNetFinetune.Data;
using MlNetFinetune.Explanations;
using MlNetFinetune.Training;

namespace MlNetFinetune.Benchmarks;

/// <summary>
/// <c>explain-near-duplicates --data &lt;class folders&gt; [--copies 200]</c>: what the near-duplicate threshold is chosen
/// from. Splits the folder 80/20 as the Trainer does, and prints the distribution of each held-out image's best
/// similarity to a training image (distinct images), then, for near copies of training images made by each edit, the
/// similarity to their source and how often the source is the best match. Also times the search.
/// </summary>
public static class NearDuplicateBenchmark
{
    private static readonly double[] s_percentiles = [0, 1, 5, 50, 95, 99, 99.9, 100];

    public static int Run(string[] args, TextWriter output)
    {
        var options = ExplanationBenchmarkOptions.Parse(args.Where((a, i) => a != "--copies" && (i == 0 || args[i - 1] != "--copies")).ToArray());
        var copiesAt = Array.IndexOf(args, "--copies");
        var copies = copiesAt >= 0 ? int.Parse(args[copiesAt + 1], CultureInfo.InvariantCulture) : 200;
        var scratch = Directory.CreateTempSubdirectory("mlnetfinetune-near-").FullName;
        try
        {
            var folder = ImageFolder.Scan(options.DataFolder);
            var (training, heldOut) = StratifiedSplit.Split(folder.Images, 0.2, seed: 1);
            var backbone = new ResNet18Backbone(BackboneOptions.ChooseFor(DataProfile.Measure(folder)));
            var sources = Enumerable.Range(0, copies).Select(i => training[i * training.Count / copies]).ToList();
            var edited = new List<(ImageRecord Copy, ImageRecord Source, NearCopyEdit Edit)>();
            foreach (var edit in Enum.GetValues<NearCopyEdit>())
            {
                foreach (var source in sources)
                {
                    var bytes = NearCopies.Make(File.ReadAllBytes(source.Path), edit);
                    var path = Path.Combine(scratch, $"{edit}-{edited.Count}{(edit is NearCopyEdit.Jpeg or NearCopyEdit.All ? ".jpg" : ".png")}");
                    File.WriteAllBytes(path, bytes);
                    edited.Add((new ImageRecord(path, source.Label), source, edit));
                }
            }

            using var store = FeatureStore.Open(new MLContext(1), options.Workspace ?? Path.Combine(scratch, "workspace"), backbone, new FeaturizationOptions());
            var features = store.Featurize([.. training, .. heldOut, .. edited.Select(e => e.Copy)]).Images;
            var trainingFeatures = features.Take(training.Count).Where(f => f.IsUsable).ToList();
            var heldOutFeatures = features.Skip(training.Count).Take(heldOut.Count).Where(f => f.IsUsable).ToList();
            var copyFeatures = features.Skip(training.Count + heldOut.Count).ToList();

            var clock = System.Diagnostics.Stopwatch.StartNew();
            var natural = NearDuplicateSearch.NearestSimilarities(trainingFeatures, heldOutFeatures);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{trainingFeatures.Count} training, {heldOutFeatures.Count} held-out images of {options.DataFolder}; {backbone.Describe()}; search {clock.Elapsed.TotalSeconds:F2} s"));
            output.WriteLine("percentiles: " + string.Join(" | ", s_percentiles.Select(p => string.Create(CultureInfo.InvariantCulture, $"p{p}"))));
            output.WriteLine("held-out best match | " + Percentiles(natural));
            var caught = new Dictionary<NearCopyEdit, float[]>();
            foreach (var edit in Enum.GetValues<NearCopyEdit>())
            {
                var mine = edited.Select((e, i) => (e, f: copyFeatures[i])).Where(x => x.e.Edit == edit).ToList();
                var search = NearDuplicateSearch.Run(trainingFeatures, [.. mine.Select(x => x.f)], new Dictionary<string, bool>(), float.NegativeInfinity);
                var byPath = search.Pairs.ToDictionary(p => p.HeldOutPath, StringComparer.Ordinal);
                caught[edit] = [.. mine.Select(x => byPath[x.e.Copy.Path].TrainingPath == x.e.Source.Path ? byPath[x.e.Copy.Path].Similarity : float.NegativeInfinity)];
                var sourceFound = caught[edit].Count(float.IsFinite);
                output.WriteLine($"{edit} copies ({sourceFound}/{mine.Count} best-matched to their source) | " + Percentiles([.. mine.Select(x => byPath[x.e.Copy.Path].Similarity)]));
            }

            output.WriteLine("threshold | distinct held-out images flagged | copies caught with their source: " + string.Join(", ", caught.Keys));
            foreach (var threshold in new[] { 0.8f, 0.85f, 0.88f, 0.9f, 0.92f, 0.95f })
            {
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{threshold} | {natural.Count(s => s >= threshold)} of {natural.Length} ({(double)natural.Count(s => s >= threshold) / natural.Length:P2}) | ")
                    + string.Join(" | ", caught.Values.Select(v => string.Create(CultureInfo.InvariantCulture, $"{(double)v.Count(s => s >= threshold) / v.Length:P0}"))));
            }

            return 0;
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    private static string Percentiles(float[] values)
    {
        var sorted = values.Order().ToArray();
        return string.Join(" | ", s_percentiles.Select(p => sorted[(int)Math.Min(sorted.Length - 1, Math.Floor(p / 100 * sorted.Length))].ToString("F3", CultureInfo.InvariantCulture)));
    }
}
