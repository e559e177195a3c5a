using System.Globalization;
using Microsoft.ML;
using MlNetFinetune.Images;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Prediction;

namespace MlNetFinetune.LoadTest;

public sealed record EngineMemoryOptions(string ModelPath, string ImagePath, int Engines)
{
    public static EngineMemoryOptions From(Arguments args)
    {
        var options = new EngineMemoryOptions(args.Required("--model"), args.Required("--image"), args.Int("--engines", 4));
        args.EnsureAllUsed();
        if (options.Engines < 2)
        {
            throw new UserInputException("--engines: at least 2, to measure what one more engine costs");
        }

        return options;
    }
}

/// <summary>
/// Resident memory of this process as engines are added: <see cref="ImageClassifier"/>'s engines (one shared
/// backbone session) against what the previous Predictor did, a whole ML.NET model per engine.
/// </summary>
public static class EngineMemory
{
    public static int Run(EngineMemoryOptions options, TextWriter output)
    {
        var bytes = File.ReadAllBytes(options.ImagePath);
        var start = ResidentMb();
        using (var classifier = ImageClassifier.Load(options.ModelPath, maxConcurrency: options.Engines))
        {
            classifier.Predict(bytes);
            var one = ResidentMb();
            classifier.WarmUp();
            var all = ResidentMb();
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"ImageClassifier: {start:F0} MB before loading, {one:F0} MB with 1 engine (model {one - start:F0} MB), {all:F0} MB with {options.Engines}: {(all - one) / (options.Engines - 1):F1} MB per further engine"));
        }

        var ml = new MLContext();
        var engines = new List<(IDisposable Model, PredictionEngine<ImageInput, ImagePrediction> Engine)>();
        var before = ResidentMb();
        var afterFirst = 0.0;
        using var image = ImageDecoder.Decode(bytes, options.ImagePath);
        for (var i = 0; i < options.Engines; i++)
        {
            var model = ml.Model.Load(options.ModelPath, out _);
            var engine = ml.Model.CreatePredictionEngine<ImageInput, ImagePrediction>(model);
            engine.Predict(new ImageInput { Image = image });
            engines.Add(((IDisposable)model, engine));
            if (i == 0)
            {
                afterFirst = ResidentMb();
            }
        }

        var afterAll = ResidentMb();
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"a whole ML.NET model per engine (the previous Predictor): {afterFirst - before:F0} MB for the first, {(afterAll - afterFirst) / (options.Engines - 1):F1} MB per further engine"));
        foreach (var (model, engine) in engines)
        {
            engine.Dispose();
            model.Dispose();
        }

        return 0;
    }

    /// <summary>Resident memory after a full collection, so that garbage awaiting collection does not count.</summary>
    private static double ResidentMb()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
    }
}
