using System.CommandLine;
using MlNetFinetune.Data;
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
        var explain = new Option<string?>("--explain") { Description = "Also write one PNG per image into this folder: the image, where the model looked (occlusion heat map), the top classes" };
        var inputs = new Argument<string[]>("images") { Description = "Image files or folders (searched recursively)", Arity = ArgumentArity.OneOrMore };
        var root = new RootCommand("Classifies images with a model trained by MlNetFinetune.") { model, top, json, file, explain, inputs, BuildServe(output, error) };
        top.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<int>() < 1)
            {
                result.AddError("--top must be at least 1");
            }
        });
        root.SetAction(parse => parse.GetValue(explain) is string folder
            ? Explain(parse.GetValue(model)!, parse.GetValue(inputs)!, parse.GetValue(top), parse.GetValue(json), parse.GetValue(file), folder, output, error)
            : Predict(parse.GetValue(model)!, parse.GetValue(inputs)!, parse.GetValue(top), parse.GetValue(json), parse.GetValue(file), output, error, errorIsTerminal));
        return root;
    }

    private static Command BuildServe(TextWriter output, TextWriter error)
    {
        var model = new Option<string>("--model") { Description = "model.zip written by the Trainer", Required = true };
        var urls = new Option<string>("--urls") { Description = "Addresses to listen on, separated by ';' (port 0: any free port)", DefaultValueFactory = _ => ServeOptions.DefaultUrls };
        var maxBody = new Option<long>("--max-body-bytes") { Description = "Largest request body; larger ones get 413", DefaultValueFactory = _ => ServeOptions.DefaultMaxBodyBytes };
        var maxPixels = new Option<long>("--max-pixels") { Description = "Largest width x height an image may declare; larger ones get 422 before decoding", DefaultValueFactory = _ => ServeOptions.DefaultMaxPixels };
        var concurrency = new Option<int?>("--max-concurrency") { Description = $"Predictions run at once, each with its own copy of the model (default {ImageClassifier.DefaultMaxConcurrency} here)" };
        var serve = new Command("serve", "Serves the model over HTTP: POST /predict, POST /explain, GET /health, GET /model.") { model, urls, maxBody, maxPixels, concurrency };
        serve.SetAction(parse => Guard(error, () =>
        {
            PredictionServer.Run(
                new ServeOptions(parse.GetValue(model)!, parse.GetValue(urls)!, parse.GetValue(maxBody), parse.GetValue(maxPixels), parse.GetValue(concurrency)),
                output);
            return Success;
        }));
        return serve;
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

    /// <summary>Classifies and explains every image under <paramref name="inputs"/>, one PNG each into <paramref name="folder"/>.</summary>
    private static int Explain(string modelPath, IReadOnlyList<string> inputs, int top, bool json, string? outputFile, string folder, TextWriter output, TextWriter error) =>
        Guard(error, () =>
        {
            if (outputFile is not null)
            {
                throw new UserInputException($"--explain {folder} with --output {outputFile}: explanations print their results; use one of the two");
            }

            var files = ExpandInputs(inputs);
            using var classifier = ImageClassifier.Load(modelPath);
            var failed = ExplainedImages.Write(classifier, files, top, json ? ResultFormat.JsonLines : ResultFormat.Text, folder, output, error);
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
