using System.CommandLine;
using System.Globalization;
using MlNetFinetune.CommandLine;
using MlNetFinetune.Backbones;
using MlNetFinetune.Backbones.Quantization;
using MlNetFinetune.Data;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Training;
using MlNetFinetune.Training.FineTuning;
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
    private static readonly Option<int> s_seed = new Option<int>("--seed") { Description = "Seed of the splits and of ML.NET", DefaultValueFactory = _ => 1 }.Invariant();
    private static readonly Option<string?> s_workspace = new("--workspace") { Description = "Bottleneck cache folder (default: ~/.cache/mlnetfinetune)" };
    private static readonly Option<double> s_heldOut = new Option<double>("--held-out-fraction") { Description = "Share of each class held out when --test is not given", DefaultValueFactory = _ => 0.2 }.Invariant();
    private static readonly Option<int?> s_imageSize = new Option<int?>("--image-size") { Description = "Backbone input side in pixels, a multiple of 32 (default: chosen from the images' size)" }.Invariant();
    private static readonly Option<string?> s_features = new("--features") { Description = "Pooled backbone taps, e.g. s4, s3+s4, s2g2+s3g2+s4 (default: chosen from the data); with --backbone <file.onnx>: tensor names joined by ',', name@g2 pools on a 2x2 grid (default: its first output)" };
    private static readonly Option<string?> s_backbone = new("--backbone") { Description = "resnet18 (built in) or the path of your own ONNX image model, input [N,3,H,W] float (default: resnet18)" };
    private static readonly Option<string?> s_pixelRange = new("--pixel-range") { Description = "With --backbone <file.onnx>: the input range its mean and std apply in, 0-1 or 0-255 (default 0-1)" };
    private static readonly Option<string?> s_pixelMean = new("--pixel-mean") { Description = "With --backbone <file.onnx>: per-channel mean, e.g. 0.485,0.456,0.406 (the default)" };
    private static readonly Option<string?> s_pixelStd = new("--pixel-std") { Description = "With --backbone <file.onnx>: per-channel standard deviation, e.g. 0.229,0.224,0.225 (the default)" };
    private static readonly Option<string?> s_channelOrder = new("--channel-order") { Description = "With --backbone <file.onnx>: rgb or bgr (default rgb)" };
    private static readonly Option<long> s_maxPixels = new Option<long>("--max-pixels") { Description = "Largest width x height an image may decode to; larger ones are skipped before decoding", DefaultValueFactory = _ => Images.ImageLimits.DefaultMaxPixels }.Invariant();
    private static readonly Option<bool> s_mirrored = new("--mirrored-views") { Description = "Also train on the horizontally mirrored view of every training image" };
    private static readonly Option<bool> s_keepDuplicates = new("--keep-held-out-duplicates") { Description = "Score held-out images whose bytes equal a training image's too (by default they are left out of the score and listed)" };
    private static readonly Option<string?> s_shard = new("--shard") { Description = "Only featurize shard k of n (k/n) into the cache, for running on several machines; then train without it" };
    private static readonly Option<float?> s_l2 = new Option<float?>("--l2") { Description = "L2 strength of the head (default: chosen on the validation split)" }.Invariant();
    private static readonly Option<string> s_head = new("--head") { Description = "softmax: L2 search of the softmax head; auto: also SDCA and LightGBM heads, on the validation split", DefaultValueFactory = _ => HeadOptions.SoftmaxSearch };
    private static readonly Option<double> s_searchMinutes = new Option<double>("--search-minutes") { Description = "Time budget of the head search", DefaultValueFactory = _ => 10 }.Invariant();
    private static readonly Option<int> s_batch = new Option<int>("--batch-size") { Description = "Images per backbone call", DefaultValueFactory = _ => new FeaturizationOptions().BatchSize }.Invariant();
    private static readonly Option<Precision> s_precision = new("--precision")
    {
        Description = "Backbone number format: fp32, or int8 (quantized for the CPU, calibrated on a sample of the training images; built-in backbone only, not with --gpu)",
        DefaultValueFactory = _ => new TrainingOptions("").Precision,
        CustomParser = ParsePrecision,
    };

    private static readonly Option<int> s_calibrationImages = new Option<int>("--calibration-images") { Description = "With --precision int8: training images the activation ranges are calibrated on, the same share of each class", DefaultValueFactory = _ => new QuantizationOptions().CalibrationImages }.Invariant();

    private static readonly FineTuneOptions s_fineTuneDefaults = new();
    private static readonly Option<bool> s_fineTune = new("--fine-tune") { Description = "Also train the top stages of the backbone (SGD with momentum, validated every epoch, best epoch kept), then fit the head on the fine-tuned network's features" };
    private static readonly Option<int> s_fineTuneStages = new Option<int>("--fine-tune-stages") { Description = "With --fine-tune: how many of the backbone's 4 stages train, from the top; the stem and the stages below stay frozen", DefaultValueFactory = _ => s_fineTuneDefaults.Stages }.Invariant();
    private static readonly Option<int> s_epochs = new Option<int>("--epochs") { Description = "With --fine-tune: passes over the training images", DefaultValueFactory = _ => s_fineTuneDefaults.Epochs }.Invariant();
    private static readonly Option<int> s_fineTuneBatch = new Option<int>("--fine-tune-batch-size") { Description = "With --fine-tune: images per SGD step", DefaultValueFactory = _ => s_fineTuneDefaults.BatchSize }.Invariant();
    private static readonly Option<float> s_learningRate = new Option<float>("--learning-rate") { Description = "With --fine-tune: SGD learning rate of the backbone's stages (the peak for one-cycle)", DefaultValueFactory = _ => s_fineTuneDefaults.LearningRate }.Invariant();
    private static readonly Option<float> s_headRateMultiple = new Option<float>("--head-learning-rate-multiple") { Description = "With --fine-tune: the new head's learning rate is this times --learning-rate", DefaultValueFactory = _ => s_fineTuneDefaults.HeadLearningRateMultiple }.Invariant();
    private static readonly Option<string> s_schedule = new("--lr-schedule") { Description = "With --fine-tune: step, exponential, cosine or one-cycle", DefaultValueFactory = _ => "cosine" };
    private static readonly Option<float> s_weightDecay = new Option<float>("--weight-decay") { Description = "With --fine-tune: L2 weight decay of the weights (not the biases)", DefaultValueFactory = _ => s_fineTuneDefaults.WeightDecay }.Invariant();
    private static readonly Option<float> s_momentum = new Option<float>("--momentum") { Description = "With --fine-tune: SGD momentum", DefaultValueFactory = _ => s_fineTuneDefaults.Momentum }.Invariant();
    private static readonly Option<string> s_augment = new("--augment") { Description = "With --fine-tune: none, flip or flip+shift of the training images (validation and held-out images never)", DefaultValueFactory = _ => "flip" };
    private static readonly Option<int> s_patience = new Option<int>("--patience") { Description = "With --fine-tune: stop after this many epochs without a lower validation loss; 0 never stops early", DefaultValueFactory = _ => s_fineTuneDefaults.Patience }.Invariant();
    private static readonly Option<int> s_headEpochs = new Option<int>("--head-epochs") { Description = "With --fine-tune: epochs that train the new head alone before the backbone (reported as epoch 0)", DefaultValueFactory = _ => s_fineTuneDefaults.HeadEpochs }.Invariant();
    private static readonly Option<bool> s_resume = new("--resume") { Description = "With --fine-tune: continue an interrupted run into the same --output from its last finished epoch (same options and images)" };

    /// <summary>Options that only mean something with --fine-tune.</summary>
    private static readonly Option[] s_fineTuneOnly = [s_fineTuneStages, s_epochs, s_fineTuneBatch, s_learningRate, s_headRateMultiple, s_schedule, s_weightDecay, s_momentum, s_augment, s_patience, s_headEpochs, s_resume];

    private static readonly Option<int?> s_gpu = new Option<int?>("--gpu") { Description = "Run the backbone on this CUDA device, 0 when no number is given (falls back to the CPU with a message)", Arity = ArgumentArity.ZeroOrOne }.Invariant();
    private static readonly Option<string> s_labelErrors = new("--find-label-errors")
    {
        Description = $"Search the training images for wrong labels by out-of-fold predictions: on, off, or auto (when training images x features is at most {Explanations.ExplanationOptions.LabelErrorSearchLimit / 1_000_000} million)",
        DefaultValueFactory = _ => "auto",
    };

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
        // A fine-tuning goes on to save its best epoch after the first Ctrl+C; a second one ends the process (every file
        // is written atomically, so none is left half written).
        void OnCancel(object? sender, ConsoleCancelEventArgs e)
        {
            e.Cancel = !interrupt.IsCancellationRequested;
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

    /// <summary>
    /// Parses a training command line (no subcommand) into validated options without doing any work; throws
    /// <see cref="UserInputException"/> with the first problem, as the program would print it.
    /// </summary>
    public static TrainingOptions Parse(string[] args)
    {
        var parse = Build(AnsiConsole.Console, TextWriter.Null, CancellationToken.None).Parse(args);
        if (parse.Errors.Count > 0)
        {
            throw new UserInputException(parse.Errors[0].Message);
        }

        var options = ToOptions(parse);
        options.Validate();
        return options;
    }

    /// <summary>
    /// The console the Trainer writes to. Spectre.Console wraps text at the console's width and takes 80 columns when
    /// the output is not a terminal, which would break every long line of a log file; redirected output gets a width no
    /// line reaches.
    /// </summary>
    public static IAnsiConsole CreateConsole(TextWriter output, bool redirected)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(output),
            Interactive = redirected ? InteractionSupport.No : InteractionSupport.Detect,
            Ansi = redirected ? AnsiSupport.No : AnsiSupport.Detect,
        });
        if (redirected)
        {
            console.Profile.Width = RedirectedWidth;
        }

        return console;
    }

    /// <summary>The console width when output is redirected: wider than any line the Trainer prints.</summary>
    public const int RedirectedWidth = 1 << 16;

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
            Backbone = parse.GetValue(s_backbone),
            Pixels = PixelConvention.Parse(parse.GetValue(s_pixelRange), parse.GetValue(s_pixelMean), parse.GetValue(s_pixelStd), parse.GetValue(s_channelOrder)),
            MirroredViews = parse.GetValue(s_mirrored),
            ExcludeHeldOutDuplicates = !parse.GetValue(s_keepDuplicates),
            Head = new HeadOptions(parse.GetValue(s_l2), Search: parse.GetValue(s_head)!, SearchBudget: SearchBudget(parse.GetValue(s_searchMinutes))),
            Precision = parse.GetValue(s_precision),
            Quantization = new QuantizationOptions(CalibrationImages: parse.GetValue(s_calibrationImages)),
            Featurization = new FeaturizationOptions(BatchSize: parse.GetValue(s_batch), GpuDevice: gpuGiven ? parse.GetValue(s_gpu) ?? 0 : null,
                Limits: new Images.ImageLimits(MaxPixels: parse.GetValue(s_maxPixels))),
            FineTune = FineTune(parse),
            Resume = parse.GetValue(s_resume),
            Explanations = new Explanations.ExplanationOptions(FindLabelErrors: parse.GetValue(s_labelErrors) switch { "on" => true, "off" => false, _ => null }),
        };
    }

    /// <summary>The fine-tuning options; null without --fine-tune, where giving one of them is an error rather than ignored.</summary>
    private static FineTuneOptions? FineTune(ParseResult parse)
    {
        if (!parse.GetValue(s_fineTune))
        {
            var given = s_fineTuneOnly.FirstOrDefault(o => parse.GetResult(o) is { Implicit: false });
            return given is null || given == s_resume ? null : throw new UserInputException($"{given.Name}: only with --fine-tune");
        }

        return new FineTuneOptions(
            Stages: parse.GetValue(s_fineTuneStages),
            Epochs: parse.GetValue(s_epochs),
            BatchSize: parse.GetValue(s_fineTuneBatch),
            LearningRate: parse.GetValue(s_learningRate),
            HeadLearningRateMultiple: parse.GetValue(s_headRateMultiple),
            Schedule: FineTuneOptions.ParseSchedule(parse.GetValue(s_schedule)!),
            WeightDecay: parse.GetValue(s_weightDecay),
            Momentum: parse.GetValue(s_momentum),
            Augment: FineTuneOptions.ParseAugmentation(parse.GetValue(s_augment)!),
            Seed: parse.GetValue(s_seed),
            Patience: parse.GetValue(s_patience),
            HeadEpochs: parse.GetValue(s_headEpochs));
    }

    /// <summary>--search-minutes as a time span; beyond what a TimeSpan holds it is an error, not an OverflowException.</summary>
    private static TimeSpan SearchBudget(double minutes) => minutes <= TimeSpan.MaxValue.TotalMinutes
        ? TimeSpan.FromMinutes(Math.Max(minutes, 0))
        : throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"--search-minutes {minutes}: at most {TimeSpan.MaxValue.TotalMinutes:F0}"));

    /// <summary>fp32 or int8, any case; anything else is one error line naming the choices.</summary>
    private static Precision ParsePrecision(System.CommandLine.Parsing.ArgumentResult result)
    {
        var text = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
        if (text.Equals("fp32", StringComparison.OrdinalIgnoreCase))
        {
            return Precision.Fp32;
        }

        if (text.Equals("int8", StringComparison.OrdinalIgnoreCase))
        {
            return Precision.Int8;
        }

        result.AddError($"--precision {text}: use fp32 or int8");
        return default;
    }

    private static RootCommand Build(IAnsiConsole console, TextWriter error, CancellationToken interrupt)
    {
        var root = new RootCommand("Fine-tunes the pretrained ResNet18 on a folder of labelled images and evaluates it on held-out images.");
        Option[] options = [s_data, s_test, s_output, s_seed, s_workspace, s_heldOut, s_imageSize, s_features, s_backbone, s_pixelRange, s_pixelMean, s_pixelStd, s_channelOrder, s_mirrored, s_keepDuplicates, s_maxPixels, s_l2, s_head, s_searchMinutes, s_batch, s_precision, s_calibrationImages, s_gpu, s_shard, s_labelErrors, s_fineTune, .. s_fineTuneOnly];
        foreach (var option in options)
        {
            root.Options.Add(option);
        }

        s_head.AcceptOnlyFromAmong(HeadOptions.SoftmaxSearch, HeadOptions.AutoSearch);
        s_labelErrors.AcceptOnlyFromAmong("auto", "on", "off");
        root.SetAction(parse => Guarded(error, () => parse.GetValue(s_shard) is string shard
            ? FeaturizeShard(ToOptions(parse), ShardSpec.Parse(shard), console, error, interrupt)
            : Train(ToOptions(parse), console, error, interrupt)));
        root.Subcommands.Add(ExportCommand(console, error));
        root.Subcommands.Add(OpenMojiCommand(console, error));
        return root;
    }

    private static int Train(TrainingOptions options, IAnsiConsole console, TextWriter error, CancellationToken interrupt)
    {
        options.Validate();
        console.MarkupLineInterpolated($"[bold]MlNetFinetune[/] training on [blue]{options.DataFolder}[/]");
        TrainingResult result;
        try
        {
            var trainer = new ImageClassifierTrainer(options);
            result = ProgressDisplay.Run(console, progress => trainer.Train(progress, line => console.WriteLine(line), interrupt));
        }
        catch (OperationCanceledException)
        {
            error.WriteLine(options.FineTune is null
                ? "interrupted: finished features are kept in the bottleneck cache; run the same command again to continue"
                : "interrupted: no model was saved; the same command with --resume continues from the last finished fine-tuning epoch (without one, run it again as it was)");
            return ExitCodes.Interrupted;
        }

        ReportConsole.Print(console, result.Report);
        console.MarkupLineInterpolated($"Model: [green]{result.ModelPath}[/]");
        var suspects = result.Report.LabelErrors is null ? "" : ", " + Explanations.LabelErrorSearchResult.FileName;
        console.MarkupLineInterpolated($"Reports: [green]{Path.GetFullPath(options.OutputFolder)}[/] (report.json, report.md, report.html, heldout-predictions.csv{suspects})");
        if (result.FineTuningInterrupted)
        {
            error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"interrupted: the model holds the best fine-tuning epoch finished before Ctrl+C (epoch {result.Report.FineTuning!.BestEpoch}), saved to {result.ModelPath}; add --resume to the same command to train the remaining epochs"));
            return ExitCodes.Interrupted;
        }

        return ExitCodes.Success;
    }

    private static int FeaturizeShard(TrainingOptions options, ShardSpec shard, IAnsiConsole console, TextWriter error, CancellationToken interrupt)
    {
        if (options.FineTune is not null)
        {
            throw new UserInputException("--shard: shards featurize with the pretrained backbone, which --fine-tune replaces; fine-tune without --shard");
        }

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
        var perClass = new Option<int?>("--per-class") { Description = "At most this many images of each class per part (default: all)" }.Invariant();
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
