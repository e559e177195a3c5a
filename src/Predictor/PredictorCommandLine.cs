using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using MlNetFinetune.Data;
using MlNetFinetune.Prediction;

namespace MlNetFinetune.Predictor;

/// <summary>Parses the Predictor's command line and prints the classifier's answers.</summary>
public static class PredictorCommandLine
{
    public const int Success = 0;
    public const int Failure = 1;
    public const int UserError = 2;

    private static readonly JsonSerializerOptions s_json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    /// <summary>Parses and runs; returns the exit code.</summary>
    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        var parse = Build(output, error).Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var parseError in parse.Errors)
            {
                error.WriteLine($"error: {parseError.Message}");
            }

            error.WriteLine("run with --help for the options");
            return UserError;
        }

        return parse.Invoke(new InvocationConfiguration { Output = output, Error = error });
    }

    private static RootCommand Build(TextWriter output, TextWriter error)
    {
        var model = new Option<string>("--model") { Description = "model.zip written by the Trainer", Required = true };
        var top = new Option<int>("--top") { Description = "How many classes to list per image", DefaultValueFactory = _ => 3 };
        var json = new Option<bool>("--json") { Description = "One JSON object per image (JSON lines) instead of text" };
        var inputs = new Argument<string[]>("images") { Description = "Image files or folders (searched recursively)", Arity = ArgumentArity.OneOrMore };
        var root = new RootCommand("Classifies images with a model trained by MlNetFinetune.") { model, top, json, inputs };
        top.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<int>() < 1)
            {
                result.AddError("--top must be at least 1");
            }
        });
        root.SetAction(parse => Predict(parse.GetValue(model)!, parse.GetValue(inputs)!, parse.GetValue(top), parse.GetValue(json), output, error));
        return root;
    }

    /// <summary>Classifies every image under <paramref name="inputs"/>; bad images are reported on <paramref name="error"/> and the rest go on.</summary>
    public static int Predict(string modelPath, IReadOnlyList<string> inputs, int top, bool json, TextWriter output, TextWriter error)
    {
        try
        {
            var files = ExpandInputs(inputs);
            using var classifier = ImageClassifier.Load(modelPath);
            var failed = 0;
            foreach (var file in files)
            {
                try
                {
                    var result = classifier.Predict(file, top);
                    output.WriteLine(json ? JsonLine(file, result) : TextLine(file, result));
                }
                catch (InvalidDataException e)
                {
                    error.WriteLine($"error: {e.Message}");
                    failed++;
                }
            }

            return failed == 0 ? Success : UserError;
        }
        catch (UserInputException e)
        {
            error.WriteLine($"error: {e.Message}");
            return UserError;
        }
        catch (Exception e)
        {
            error.WriteLine($"error: {e.GetType().Name}: {e.Message}");
            return Failure;
        }
    }

    private static List<string> ExpandInputs(IReadOnlyList<string> inputs)
    {
        var files = new List<string>();
        foreach (var input in inputs)
        {
            if (Directory.Exists(input))
            {
                var found = Directory.EnumerateFiles(input, "*", SearchOption.AllDirectories)
                    .Where(ImageFolder.IsImageFile)
                    .Order(StringComparer.Ordinal)
                    .ToList();
                if (found.Count == 0)
                {
                    throw new UserInputException($"{input}: folder holds no images");
                }

                files.AddRange(found);
            }
            else if (File.Exists(input))
            {
                files.Add(input);
            }
            else
            {
                throw new UserInputException($"{input}: no such file or folder");
            }
        }

        return files;
    }

    private static string TextLine(string file, ClassificationResult result) =>
        string.Create(CultureInfo.InvariantCulture, $"{file}\t{result.Label}\t{result.Confidence:F4}\t") +
        string.Join("  ", result.Top.Select(s => string.Create(CultureInfo.InvariantCulture, $"{s.Label}={s.Score:F4}")));

    private static string JsonLine(string file, ClassificationResult result) =>
        JsonSerializer.Serialize(new { path = file, label = result.Label, confidence = result.Confidence, top = result.Top }, s_json);
}
