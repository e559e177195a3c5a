using MlNetFinetune;
using MlNetFinetune.LoadTest;

const string Usage = """
    usage:
      mlnet-finetune-loadtest http --url http://127.0.0.1:<port> --images <folder> [--concurrency 1,8,32] [--requests 200] [--warm-up 100] [--server-pid <pid>]
      mlnet-finetune-loadtest library --model <model.zip> --image <file> [--calls 200]
    """;

try
{
    return args switch
    {
        ["http", .. var rest] => await HttpLoad.RunAsync(HttpLoadOptions.From(Arguments.Parse(rest)), Console.Out),
        ["library", .. var rest] => LibraryLatency.Run(LibraryLatencyOptions.From(Arguments.Parse(rest)), Console.Out),
        _ => throw new UserInputException(Usage),
    };
}
catch (UserInputException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}
