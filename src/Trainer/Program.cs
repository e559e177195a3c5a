using MlNetFinetune.Trainer;

return TrainerCommandLine.Run(args, TrainerCommandLine.CreateConsole(Console.Out, Console.IsOutputRedirected), Console.Error);
