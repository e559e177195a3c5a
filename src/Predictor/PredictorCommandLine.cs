using System.CommandLine;
using System.Globalization;
using MlNetFinetune.CommandLine;
using MlNetFinetune.Data;
using MlNetFinetune.Export;
using MlNetFinetune.Images;
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
        // Each subcommand has a command line of its own: as a subcommand of the batch command its usage would show the
        // batch command's required image arguments ("<images>... serve [options]").
        var root = args switch
        {
            ["serve", ..] => SubcommandRoot(ServeCommand(output, error)),
            ["export-onnx", ..] => SubcommandRoot(ExportOnnxCommand(output, error)),
            _ => PredictRoot(output, error, errorIsTerminal),
        };
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var parseError in parse.Errors)
            {
                error.WriteLine($"error: {parseError.Message}");
            }

            error.WriteLine($"run with {(args is [("serve" or "export-onnx") and var subcommand, ..] ? subcommand + " " : "")}--help for the options");
            return UserError;
        }

        return parse.Invoke(new InvocationConfiguration { Output = output, Error = error });
    }

    private static RootCommand PredictRoot(TextWriter output, TextWriter error, bool errorIsTerminal)
    {
        var model = new Option<string>("--model") { Description = "model.zip written by the Trainer", Required = true };
        var top = new Option<int>("--top") { Description = "How many classes to list per image", DefaultValueFactory = _ => 3 }.Invariant();
        var json = new Option<bool>("--json") { Description = "One JSON object per image (JSON lines) instead of text" };
        var file = new Option<string?>("--output") { Description = "Write the results to this .csv or .jsonl file and show progress instead of printing them" };
        var maxPixels = new Option<long>("--max-pixels") { Description = "Largest width x height an image may declare; larger ones are reported and skipped before decoding", DefaultValueFactory = _ => ImageLimits.DefaultMaxPixels }.Invariant();
        var explain = new Option<string?>("--explain") { Description = "Also write one PNG per image into this folder: the image, where the model looked (occlusion heat map), the top classes" };
        var inputs = new Argument<string[]>("images") { Description = "Image files or folders (searched recursively)", Arity = ArgumentArity.OneOrMore };
        var root = new RootCommand("Classifies images with a model trained by MlNetFinetune. `serve --help` describes the HTTP server, `export-onnx --help` the ONNX export.")
        {
            model, top, json, file, maxPixels, explain, inputs, ServeCommand(output, error), ExportOnnxCommand(output, error),
        };
        root.SetAction(parse =>
        {
            var options = new PredictOptions(parse.GetValue(model)!, parse.GetValue(inputs)!, parse.GetValue(top), parse.GetValue(json), parse.GetValue(file), parse.GetValue(maxPixels));
            return Guard(error, () => parse.GetValue(explain) is string folder
                ? Explain(options, folder, output, error)
                : Predict(options, output, error, errorIsTerminal));
        });
        return root;
    }

    private static RootCommand SubcommandRoot(Command subcommand) =>
        new("Classifies images with a model trained by MlNetFinetune.") { subcommand };

    private static Command ServeCommand(TextWriter output, TextWriter error)
    {
        var model = new Option<string>("--model") { Description = "model.zip written by the Trainer", Required = true };
        var urls = new Option<string>("--urls") { Description = "http:// addresses to listen on, separated by ';' (port 0: any free port)", DefaultValueFactory = _ => ServeOptions.DefaultUrls };
        var maxBody = new Option<long>("--max-body-bytes") { Description = "Largest request body; larger ones get 413", DefaultValueFactory = _ => ServeOptions.DefaultMaxBodyBytes }.Invariant();
        var maxInFlight = new Option<long>("--max-inflight-bytes") { Description = "Request bodies held in memory at once; further requests wait, unread", DefaultValueFactory = _ => ServeOptions.DefaultMaxInFlightBytes }.Invariant();
        var maxPixels = new Option<long>("--max-pixels") { Description = "Largest width x height an image may declare; larger ones get 422 before decoding", DefaultValueFactory = _ => ServeOptions.DefaultMaxPixels }.Invariant();
        var concurrency = new Option<int?>("--max-concurrency") { Description = $"Predictions run at once (default {ImageClassifier.DefaultMaxConcurrency} here)" }.Invariant();
        var hosts = new Option<string[]>("--allowed-hosts") { Description = "Host names clients may use besides localhost and IP addresses ('*': any)", AllowMultipleArgumentsPerToken = true };
        var origins = new Option<string[]>("--allowed-origins") { Description = "Web origins whose pages may call the server, e.g. https://app.example.com ('*': any)", AllowMultipleArgumentsPerToken = true };
        var serve = new Command("serve", "Serves the model over HTTP: POST /predict, POST /explain, GET /health, GET /model.")
        {
            model, urls, maxBody, maxInFlight, maxPixels, concurrency, hosts, origins,
        };
        serve.SetAction(parse => Guard(error, () =>
        {
            PredictionServer.Run(
                new ServeOptions(parse.GetValue(model)!, parse.GetValue(urls)!, parse.GetValue(maxBody), parse.GetValue(maxPixels), parse.GetValue(concurrency))
                {
                    MaxInFlightBytes = parse.GetValue(maxInFlight),
                    AllowedHosts = parse.GetValue(hosts) ?? [],
                    AllowedOrigins = parse.GetValue(origins) ?? [],
                },
                output);
            return Success;
        }));
        return serve;
    }

    private static Command ExportOnnxCommand(TextWriter output, TextWriter error)
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
    /// Classifies every image under the inputs to <paramref name="output"/>, or to the output file when given; bad
    /// images are reported on <paramref name="error"/> and the rest go on.
    /// </summary>
    private static int Predict(PredictOptions options, TextWriter output, TextWriter error, bool errorIsTerminal)
    {
        options.Validate();
        var format = options.OutputFile is null ? options.Json ? ResultFormat.JsonLines : ResultFormat.Text : ResultRows.FormatOfFile(options.OutputFile);
        var files = ExpandInputs(options.Inputs);
        using var classifier = ImageClassifier.Load(new ImageClassifierOptions { ModelPath = options.ModelPath, Limits = new ImageLimits(MaxPixels: options.MaxPixels) });
        if (options.OutputFile is not null)
        {
            return BatchPrediction.WriteFile(classifier, files, options.Top, options.OutputFile, error, errorIsTerminal) == 0 ? Success : UserError;
        }

        var failed = 0;
        foreach (var outcome in BatchPrediction.PredictAll(classifier, files, options.Top))
        {
            if (outcome.Result is null)
            {
                error.WriteLine($"error: {outcome.Problem}");
                failed++;
            }
            else
            {
                output.WriteLine(ResultRows.Row(format, options.Top, outcome.Path, outcome.Result, null));
            }
        }

        return failed == 0 ? Success : UserError;
    }

    /// <summary>Classifies and explains every image under the inputs, one PNG each into <paramref name="folder"/>.</summary>
    private static int Explain(PredictOptions options, string folder, TextWriter output, TextWriter error)
    {
        options.Validate();
        if (options.OutputFile is not null)
        {
            throw new UserInputException($"--explain {folder} with --output {options.OutputFile}: explanations print their results; use one of the two");
        }

        var files = ExpandInputs(options.Inputs);
        using var classifier = ImageClassifier.Load(new ImageClassifierOptions { ModelPath = options.ModelPath, Limits = new ImageLimits(MaxPixels: options.MaxPixels) });
        var failed = ExplainedImages.Write(classifier, files, options.Top, options.Json ? ResultFormat.JsonLines : ResultFormat.Text, folder, output, error);
        return failed == 0 ? Success : UserError;
    }

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
                // Paths are shown as the user wrote the folder, not made absolute.
                var root = Path.GetFullPath(input);
                var found = ImageFolder.FindImageFiles(input, out _).Select(f => Path.Join(input, Path.GetRelativePath(root, f))).ToList();
                if (found.Count == 0)
                {
                    throw new UserInputException($"{input}: folder holds no images");
                }

                files.AddRange(found);
            }
            else if (File.Exists(input) || new FileInfo(input).LinkTarget is not null)
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
