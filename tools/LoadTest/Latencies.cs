using System.Globalization;

namespace MlNetFinetune.LoadTest;

/// <summary>Percentiles of a set of timings in milliseconds (nearest rank, so p99 of 200 is the second slowest).</summary>
public sealed class Latencies(IEnumerable<double> milliseconds)
{
    private readonly double[] _sorted = [.. milliseconds.Order()];

    public int Count => _sorted.Length;

    public double Mean => _sorted.Average();

    public double Percentile(double p) => _sorted[Math.Clamp((int)Math.Ceiling(p / 100 * _sorted.Length) - 1, 0, _sorted.Length - 1)];

    public static string Ms(double value) => value.ToString("F2", CultureInfo.InvariantCulture);
}
