using MlNetFinetune.Predictor;

return PredictorCommandLine.Run(args, Console.Out, Console.Error, errorIsTerminal: !Console.IsErrorRedirected);
