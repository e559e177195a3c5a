using MlNetFinetune.Predictor;
using MlNetFinetune.Trainer;
using Spectre.Console;

namespace MlNetFinetune.Tests;

/// <summary>Runs the Trainer and Predictor command lines in-process and captures what they print.</summary>
public static class CommandLineRunner
{
    public sealed record Outcome(int ExitCode, string Output, string Error);

    public static Outcome Trainer(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(output),
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
        });
        var code = TrainerCommandLine.Run(args, console, error);
        return new Outcome(code, output.ToString(), error.ToString());
    }

    public static Outcome Predictor(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = PredictorCommandLine.Run(args, output, error);
        return new Outcome(code, output.ToString(), error.ToString());
    }
}
