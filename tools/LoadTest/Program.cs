using MlNetFinetune;
using MlNetFinetune.LoadTest;

const string Usage = """
    usage:
      mlnet-finetune-loadtest http --url http://127.0.0.1:<port> --images <folder> [--concurrency 1,8,32] [--requests 200] [--warm-up 100] [--server-pid <pid>]
      mlnet-finetune-loadtest library --model <model.zip> --image <file> [--calls 200]
      mlnet-finetune-loadtest memory --model <model.zip> --image <file> [--engines 4]
      mlnet-finetune-loadtest uploads --url http://127.0.0.1:<port> --server-pid <pid> [--clients 64] [--bytes 9000000] [--idle-seconds 10]
      mlnet-finetune-loadtest bombs --url http://127.0.0.1:<port> --server-pid <pid> --images <folder> [--copies 8]
    """;

try
{
    return args switch
    {
        ["http", .. var rest] => await HttpLoad.RunAsync(HttpLoadOptions.From(Arguments.Parse(rest)), Console.Out),
        ["library", .. var rest] => LibraryLatency.Run(LibraryLatencyOptions.From(Arguments.Parse(rest)), Console.Out),
        ["memory", .. var rest] => EngineMemory.Run(EngineMemoryOptions.From(Arguments.Parse(rest)), Console.Out),
        ["uploads", .. var rest] => await ServerPressure.UploadsAsync(PressureOptions.From(Arguments.Parse(rest), bombs: false), Console.Out),
        ["bombs", .. var rest] => await ServerPressure.BombsAsync(PressureOptions.From(Arguments.Parse(rest), bombs: true), Console.Out),
        _ => throw new UserInputException(Usage),
    };
}
catch (UserInputException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}
