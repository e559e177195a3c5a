using MlNetFinetune.Trainer;
using Spectre.Console;

return TrainerCommandLine.Run(args, AnsiConsole.Console, Console.Error);
