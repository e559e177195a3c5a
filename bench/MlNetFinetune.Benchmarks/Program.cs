using MlNetFinetune;
using MlNetFinetune.Benchmarks;

try
{
    return args.FirstOrDefault() == "compare-gpu"
        ? GpuComparison.Run(BenchmarkOptions.Parse(args[1..]), Console.Out)
        : ThroughputBenchmark.Run(BenchmarkOptions.Parse(args), Console.Out);
}
catch (UserInputException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}
