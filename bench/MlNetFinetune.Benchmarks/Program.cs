using MlNetFinetune;
using MlNetFinetune.Benchmarks;

try
{
    return args.FirstOrDefault() switch
    {
        "compare-gpu" => GpuComparison.Run(BenchmarkOptions.Parse(args[1..]), Console.Out),
        "finetune-speed" => FineTuneSpeed.Run(FineTuneBenchOptions.Parse(args[1..], speed: true), Console.Out),
        "finetune-quality" => FineTuneQuality.Run(FineTuneBenchOptions.Parse(args[1..], speed: false), Console.Out),
        "int8" => Int8SpeedBenchmark.Run(Int8BenchmarkOptions.Parse(args[1..]), Console.Out),
        "int8-accuracy" => Int8AccuracyBenchmark.Run(Int8BenchmarkOptions.Parse(args[1..]), Console.Out),
        "int8-latency" => Int8PredictorLatency.Run(args[1..], Console.Out),
        "explain-faithfulness" => FaithfulnessBenchmark.Run(args[1..], Console.Out),
        "explain-near-duplicates" => NearDuplicateBenchmark.Run(args[1..], Console.Out),
        "explain-cost" => ExplanationCostBenchmark.Run(args[1..], Console.Out),
        "explain-label-errors" => LabelErrorBenchmark.Run(args[1..], Console.Out),
        _ => ThroughputBenchmark.Run(BenchmarkOptions.Parse(args), Console.Out),
    };
}
catch (UserInputException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}
