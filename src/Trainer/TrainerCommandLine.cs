using System.CommandLine;
using System.Globalization;
using MlNetFinetune.Backbones;
using MlNetFinetune.Data;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Training;
using Spectre.Console;

namespace MlNetFinetune.Trainer;

/// <summary>Parses the Trainer's command line and maps it to <see cref="TrainingOptions"/>; the work is the library's.</summary>
public static class TrainerCommandLine
{
    /// <summary>The committed sample, found from the working folder upwards when --data is not given.</summary>
    public const string SampleFolder = "data/fashion-mnist-sample";

    private static readonly Option<string?> s_data = new("--data") { Description = $"Training images, one subfolder per class (default: {SampleFolder})" };
    private static readonly Option<string?> s_test = new("--test") { Description = "Held-out images with the same class subfolders (default: a stratified split of --data)" };
    private static readonly Option<string> s_output = new("--output") { Description = "Folder for model.zip, report.json, report.md", DefaultValueFactory = _ => "out" };
    private static readonly Option<int> s_seed = new("--seed") { Description = "Seed of the splits and of ML.NET", DefaultValueFactory = _ => 1 };
    private static readonly Option<string?> s_workspace = new("--workspace") { Description = "Bottleneck cache folder (default: ~/.cache/mlnetfinetune)" };
    private static readonly Option<double> s_heldOut = new("--held-out-fraction") { Description = "Share of each class held out when --test is not given", DefaultValueFactory = _ => 0.2 };
    private static readonly Option<int?> s_imageSize = new("--image-size") { Description = "Backbone input side in pixels, a multiple of 32 (default: chosen from the images' size)" };
    private static readonly Option<string?> s_features = new("--features") { Description = "Pooled backbone taps, e.g. s4, s3+s4, s2g2+s3g2+s4 (default: chosen from the data)" };
    private static readonly Option<bool> s_mirrored = new("--mirrored-views") { Description = "Also train on the horizontally mirrored view of every training image" };
    private static readonly Option<string?> s_shard = new("--shard") { Description = "Only featurize shard k of n (k/n) into the cache, for running on several machines; then train without it" };
    private static readonly Option<float?> s_l2 = new("--l2") { Description = "L2 strength of the head (default: chosen on the validation split)" };
    private static readonly Option<string> s_head = new("--head") { Description = "softmax: L2 search of the softmax head; auto: also SDCA and LightGBM heads, on the validation split", DefaultValueFactory = _ => HeadOptions.SoftmaxSearch };
    private static readonly Option<double> s_searchMinutes = new("--search-minutes") { Description = "Time budget of the head search", DefaultValueFactory = _ => 10 };
    private static readonly Option<int> s_batch = new("--batch-size") { Description = "Images per backbone call", DefaultValueFactory = _ => new FeaturizationOptions().BatchSize };
    private static readonly Option<int?> s_gpu = new("--gpu") { Description = "Run the backbone on this CUDA device, 0 when no number is given (falls back to the CPU with a message)", Arity = ArgumentArity.ZeroOrOne };

    /// <summary>Parses and runs; returns the exit code. Errors go to <paramref name="error"/>, everything else to <paramref name="console"/>.</summary>
    public static int Run(string[] args, IAnsiConsole console, TextWriter error)
    {
        using var interrupt = new CancellationTokenSource();
        var parse = Build(console, error, interrupt.Token).Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var parseError in parse.Errors)
            {
                error.WriteLine($"error: {parseError.Message}");
            }

            error.WriteLine("run with --help for the options");
            return ExitCodes.UserError;
        }

        // Ctrl+C stops featurization cleanly: what is flushed stays in the cache and the next run resumes from there.
        void OnCancel(object? sender, ConsoleCancelEventArgs e)
        {
            e.Cancel = true;
            interrupt.Cancel();
        }

        Console.CancelKeyPress += OnCancel;
        try
        {
            return parse.Invoke(new InvocationConfiguration { Error = error });
        }
        finally
        {
            Console.CancelKeyPress -= OnCancel;
        }
    }

    /// <summary>Maps parsed options to <see cref="TrainingOptions"/>.</summary>
    public static TrainingOptions ToOptions(ParseResult parse)
    {
        var gpuGiven = parse.GetResult(s_gpu) is { Implicit: false };
        return new TrainingOptions(
            DataFolder: parse.GetValue(s_data) ?? FindSample(),
            TestFolder: parse.GetValue(s_test),
            OutputFolder: parse.GetValue(s_output)!,
            Workspace: parse.GetValue(s_workspace),
            Seed: parse.GetValue(s_seed),
            HeldOutFraction: parse.GetValue(s_heldOut))
        {
            ImageSize = parse.GetValue(s_imageSize),
            Features = parse.GetValue(s_features),
            MirroredViews = parse.GetValue(s_mirrored),
            Head = new HeadOptions(parse.GetValue(s_l2), Search: parse.GetValue(s_head)!, SearchBudget: TimeSpan.FromMinutes(parse.GetValue(s_searchMinutes))),
            Featurization = new FeaturizationOptions(BatchSize: parse.GetValue(s_batch), GpuDevice: gpuGiven ? parse.GetValue(s_gpu) ?? 0 : null),
        };
    }

    private static RootCommand Build(IAnsiConsole console, TextWriter error, CancellationToken interrupt)
    {
        var root = new RootCommand("Fine-tunes the pretrained ResNet18 on a folder of labelled images and evaluates it on held-out images.");
        foreach (var option in new Option[] { s_data, s_test, s_output, s_seed, s_workspace, s_heldOut, s_imageSize, s_features, s_mirrored, s_l2, s_head, s_searchMinutes, s_batch, s_gpu, s_shard })
        {
            root.Options.Add(option);
        }

        s_head.AcceptOnlyFromAmong(HeadOptions.SoftmaxSearch, HeadOptions.AutoSearch);
        root.SetAction(parse => Guarded(error, () => parse.GetValue(s_shard) is string shard
            ? FeaturizeShard(ToOptions(parse), ShardSpec.Parse(shard), console, error, interrupt)
            : Train(ToOptions(parse), console, error, interrupt)));
        root.Subcommands.Add(ExportCommand(console, error));
        root.Subcommands.Add(OpenMojiCommand(console, error));
        return root;
    }

    private static int Train(TrainingOptions options, IAnsiConsole console, TextWriter error, CancellationToken interrupt)
    {
        console.MarkupLineInterpolated($"[bold]MlNetFinetune[/] training on [blue]{options.DataFolder}[/]");
        TrainingResult result;
        try
        {
            var trainer = new ImageClassifierTrainer(options);
            result = ProgressDisplay.Run(console, progress => trainer.Train(progress, line => console.WriteLine(line), interrupt));
        }
        catch (OperationCanceledException)
        {
            error.WriteLine("interrupted: finished features are kept in the bottleneck cache; run the same command again to continue");
            return ExitCodes.Interrupted;
        }

        ReportConsole.Print(console, result.Report);
        console.MarkupLineInterpolated($"Model: [green]{result.ModelPath}[/]");
        console.MarkupLineInterpolated($"Reports: [green]{Path.GetFullPath(options.OutputFolder)}[/] (report.json, report.md, report.html, heldout-predictions.csv)");
        return ExitCodes.Success;
    }

    private static int FeaturizeShard(TrainingOptions options, ShardSpec shard, IAnsiConsole console, TextWriter error, CancellationToken interrupt)
    {
        try
        {
            var trainer = new ImageClassifierTrainer(options);
            var result = ProgressDisplay.Run(console, progress => trainer.FeaturizeShard(shard, progress, line => console.WriteLine(line), interrupt));
            foreach (var s in result.Skipped)
            {
                console.WriteLine($"skipped {s.Path}: {s.Reason}");
            }

            console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"Shard {shard}: {result.Computed} feature vectors computed ({result.ImagesPerSecond:F1}/s), {result.FromCache} images already cached, {result.Skipped.Count} skipped"));
            return ExitCodes.Success;
        }
        catch (OperationCanceledException)
        {
            error.WriteLine("interrupted: finished features are kept in the bottleneck cache; run the same command again to continue");
            return ExitCodes.Interrupted;
        }
    }

    private static Command ExportCommand(IAnsiConsole console, TextWriter error)
    {
        var output = new Option<string>("--output") { Description = "Folder to write train/<class>/*.png and test/<class>/*.png into", Required = true };
        var perClass = new Option<int?>("--per-class") { Description = "At most this many images of each class per part (default: all)" };
        var source = new Option<string>("--source") { Description = "Folder of the idx files", DefaultValueFactory = _ => FashionMnist.DefaultSourceFolder };
        var command = new Command("export-fashion-mnist", "Writes the real Fashion-MNIST (Debian package dataset-fashion-mnist) as PNG class folders.")
        {
            output, perClass, source,
        };
        command.SetAction(parse => Guarded(error, () =>
        {
            foreach (var part in new[] { FashionMnist.Part.Train, FashionMnist.Part.Test })
            {
                var folder = Path.Combine(parse.GetValue(output)!, part.ToString().ToLowerInvariant());
                var count = FashionMnist.Export(part, folder, parse.GetValue(perClass), parse.GetValue(source)!);
                console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{count} images written to {folder}"));
            }

            return ExitCodes.Success;
        }));
        return command;
    }

    private static Command OpenMojiCommand(IAnsiConsole console, TextWriter error)
    {
        var output = new Option<string>("--output") { Description = "Folder to write train/<class>/*.png, test/<class>/*.png, index.csv and PROVENANCE.md into", Required = true };
        var size = new Option<int>("--size") { Description = "Side of the rendered PNGs in pixels", Required = true };
        var source = new Option<string?>("--source") { Description = $"The unpacked npm package openmoji (default: {OpenMoji.DefaultSourceFolder}, where scripts/fetch-openmoji.sh puts it)" };
        var minimum = new Option<int>("--min-per-class") { Description = "Subgroups with at least this many emoji become classes", DefaultValueFactory = _ => OpenMoji.DefaultMinimumPerClass };
        var background = new Option<string>("--background") { Description = "What transparent pixels become: transparent (RGBA PNGs), white or black", DefaultValueFactory = _ => "transparent" };
        background.AcceptOnlyFromAmong([.. Enum.GetNames<OpenMojiBackground>().Select(n => n.ToLowerInvariant())]);
        var command = new Command("export-openmoji", "Renders the OpenMoji emoji (npm package openmoji, CC BY-SA 4.0) as colour PNG class folders with rsvg-convert.")
        {
            output, size, source, minimum, background,
        };
        command.SetAction(parse => Guarded(error, () =>
        {
            var options = new OpenMojiExportOptions(parse.GetValue(output)!, parse.GetValue(size), parse.GetValue(source), parse.GetValue(minimum),
                Enum.Parse<OpenMojiBackground>(parse.GetValue(background)!, ignoreCase: true));
            var result = OpenMoji.Export(options);
            console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"openmoji {result.PackageVersion}: {result.Classes.Count} classes, {result.TrainImages} train and {result.TestImages} test images written to {options.OutputFolder}"));
            return ExitCodes.Success;
        }));
        return command;
    }

    private static int Guarded(TextWriter error, Func<int> action)
    {
        try
        {
            return action();
        }
        catch (UserInputException e)
        {
            error.WriteLine($"error: {e.Message}");
            return ExitCodes.UserError;
        }
        catch (Exception e)
        {
            error.WriteLine($"error: {e.GetType().Name}: {e.Message}");
            if (Environment.GetEnvironmentVariable("MLNETFINETUNE_DEBUG") is not null)
            {
                error.WriteLine(e);
            }

            return ExitCodes.Failure;
        }
    }

    private static string FindSample()
    {
        foreach (var start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
        {
            for (var directory = new DirectoryInfo(start); directory is not null; directory = directory.Parent)
            {
                var candidate = Path.Combine(directory.FullName, SampleFolder);
                if (Directory.Exists(candidate))
                {
                    return candidate;
                }
            }
        }

        throw new UserInputException($"no --data given and the sample folder {SampleFolder} was not found from {Environment.CurrentDirectory}");
    }
}
