using System.CommandLine;
using System.Globalization;
using MlNetFinetune.Data;
using MlNetFinetune.Export;
using MlNetFinetune.Prediction;
using MlNetFinetune.Predictor.Serving;

namespace MlNetFinetune.Predictor;

/// <summary>Parses the Predictor's command line and maps it to batch prediction or the server.</summary>
public static class PredictorCommandLine
{
    public const int Success = 0;
    public const int Failure = 1;
    public const int UserError = 2;

    /// <summary>
    /// Parses and runs; returns the exit code. <paramref name="errorIsTerminal"/> lets batch progress rewrite one line
    /// in place instead of printing a line every few seconds.
    /// </summary>
    public static int Run(string[] args, TextWriter output, TextWriter error, bool errorIsTerminal = false)
    {
        var parse = Build(output, error, errorIsTerminal).Parse(args);
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

    private static RootCommand Build(TextWriter output, TextWriter error, bool errorIsTerminal)
    {
        var model = new Option<string>("--model") { Description = "model.zip written by the Trainer", Required = true };
        var top = new Option<int>("--top") { Description = "How many classes to list per image", DefaultValueFactory = _ => 3 };
        var json = new Option<bool>("--json") { Description = "One JSON object per image (JSON lines) instead of text" };
        var file = new Option<string?>("--output") { Description = "Write the results to this .csv or .jsonl file and show progress instead of printing them" };
        var inputs = new Argument<string[]>("images") { Description = "Image files or folders (searched recursively)", Arity = ArgumentArity.OneOrMore };
        var root = new RootCommand("Classifies images with a model trained by MlNetFinetune.") { model, top, json, file, inputs, BuildServe(output, error), BuildExportOnnx(output, error) };
        top.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<int>() < 1)
            {
                result.AddError("--top must be at least 1");
            }
        });
        root.SetAction(parse => Predict(
            parse.GetValue(model)!, parse.GetValue(inputs)!, parse.GetValue(top), parse.GetValue(json), parse.GetValue(file), output, error, errorIsTerminal));
        return root;
    }

    private static Command BuildServe(TextWriter output, TextWriter error)
    {
        var model = new Option<string>("--model") { Description = "model.zip written by the Trainer", Required = true };
        var urls = new Option<string>("--urls") { Description = "Addresses to listen on, separated by ';' (port 0: any free port)", DefaultValueFactory = _ => ServeOptions.DefaultUrls };
        var maxBody = new Option<long>("--max-body-bytes") { Description = "Largest request body; larger ones get 413", DefaultValueFactory = _ => ServeOptions.DefaultMaxBodyBytes };
        var maxPixels = new Option<long>("--max-pixels") { Description = "Largest width x height an image may declare; larger ones get 422 before decoding", DefaultValueFactory = _ => ServeOptions.DefaultMaxPixels };
        var concurrency = new Option<int?>("--max-concurrency") { Description = $"Predictions run at once, each with its own copy of the model (default {ImageClassifier.DefaultMaxConcurrency} here)" };
        var serve = new Command("serve", "Serves the model over HTTP: POST /predict, GET /health, GET /model.") { model, urls, maxBody, maxPixels, concurrency };
        serve.SetAction(parse => Guard(error, () =>
        {
            PredictionServer.Run(
                new ServeOptions(parse.GetValue(model)!, parse.GetValue(urls)!, parse.GetValue(maxBody), parse.GetValue(maxPixels), parse.GetValue(concurrency)),
                output);
            return Success;
        }));
        return serve;
    }

    private static Command BuildExportOnnx(TextWriter output, TextWriter error)
    {
        var model = new Option<string>("--model") { Description = "model.zip written by the Trainer", Required = true };
        var file = new Option<string>("--output") { Description = "The .onnx file to write", Required = true };
        var examples = new Option<string[]>("--examples")
        {
            Description = "Images or folders to check the export on: the exported graph (ONNX Runtime) must agree with this model; " +
                "their pixels and probabilities are written next to the .onnx file for checking other runtimes",
            AllowMultipleArgumentsPerToken = true,
        };
        var command = new Command("export-onnx",
            "Writes the model as one ONNX graph (input: float32 [N,3,S,S] planar RGB 0..255; output: class probabilities) for runtimes outside .NET.")
        {
            model, file, examples,
        };
        command.SetAction(parse => Guard(error, () =>
        {
            var result = OnnxExporter.Export(parse.GetValue(model)!, parse.GetValue(file)!);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"wrote {result.OutputPath} ({result.Bytes / 1e6:F1} MB, opset {result.Opset}): input {OnnxExporter.InputName} float32 [N,3,{result.ImageSize},{result.ImageSize}] planar RGB 0..255, output {OnnxExporter.OutputName} [N,{result.Classes.Count}]"));
            if (parse.GetValue(examples) is not { Length: > 0 } given)
            {
                return Success;
            }

            var folder = Path.ChangeExtension(result.OutputPath, null) + ".examples";
            var check = OnnxExportCheck.Run(parse.GetValue(model)!, result.OutputPath, ExpandInputs(given), folder);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"checked with ONNX Runtime on {check.Images} images: same top class on {check.SameTopClass}, largest probability difference {check.LargestDifference:G3} (tolerance {OnnxExportCheckResult.Tolerance:G1})"));
            output.WriteLine($"examples for other runtimes: {check.ExamplesFolder} ({OnnxExportCheck.PixelsFile}, {OnnxExportCheck.ExpectedFile})");
            if (!check.Passed)
            {
                error.WriteLine("error: the exported graph does not agree with the model");
                return Failure;
            }

            return Success;
        }));
        return command;
    }

    /// <summary>
    /// Classifies every image under <paramref name="inputs"/> to <paramref name="output"/>, or to <paramref name="outputFile"/>
    /// when given; bad images are reported on <paramref name="error"/> and the rest go on.
    /// </summary>
    private static int Predict(
        string modelPath, IReadOnlyList<string> inputs, int top, bool json, string? outputFile, TextWriter output, TextWriter error, bool errorIsTerminal) =>
        Guard(error, () =>
        {
            var format = outputFile is null ? json ? ResultFormat.JsonLines : ResultFormat.Text : ResultRows.FormatOfFile(outputFile);
            var files = ExpandInputs(inputs);
            using var classifier = ImageClassifier.Load(modelPath);
            if (outputFile is not null)
            {
                return BatchPrediction.WriteFile(classifier, files, top, outputFile, error, errorIsTerminal) == 0 ? Success : UserError;
            }

            var failed = 0;
            foreach (var outcome in BatchPrediction.PredictAll(classifier, files, top))
            {
                if (outcome.Result is null)
                {
                    error.WriteLine($"error: {outcome.Problem}");
                    failed++;
                }
                else
                {
                    output.WriteLine(ResultRows.Row(format, top, outcome.Path, outcome.Result, null));
                }
            }

            return failed == 0 ? Success : UserError;
        });

    /// <summary>Maps failures to one line and an exit code: the user's mistakes to 2, anything else to 1.</summary>
    private static int Guard(TextWriter error, Func<int> run)
    {
        try
        {
            return run();
        }
        catch (UserInputException e)
        {
            error.WriteLine($"error: {e.Message}");
            return UserError;
        }
        catch (Exception e)
        {
            var cause = e is AggregateException { InnerExceptions.Count: 1 } aggregate ? aggregate.InnerExceptions[0] : e;
            error.WriteLine($"error: {cause.GetType().Name}: {cause.Message.Split('\n')[0].Trim()}");
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
}
