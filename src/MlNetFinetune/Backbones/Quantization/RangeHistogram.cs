namespace MlNetFinetune.Backbones.Quantization;

/// <summary>
/// Counts one activation's values over all calibration batches in fixed memory: positive and negative magnitudes in
/// <see cref="Bins"/> bins each over [0, range). When a value beyond the range arrives, the range doubles and
/// neighbouring bins merge, so the resolution is never coarser than twice the largest magnitude over the bin count.
/// </summary>
internal sealed class RangeHistogram
{
    public const int Bins = 4096;

    private readonly long[] _positive = new long[Bins];
    private readonly long[] _negative = new long[Bins];
    private float _range;

    /// <summary>Values counted so far.</summary>
    public long Count { get; private set; }

    /// <summary>Smallest value seen.</summary>
    public float Min { get; private set; } = float.PositiveInfinity;

    /// <summary>Largest value seen.</summary>
    public float Max { get; private set; } = float.NegativeInfinity;

    public void Add(ReadOnlySpan<float> values)
    {
        if (values.IsEmpty)
        {
            return;
        }

        var min = System.Numerics.Tensors.TensorPrimitives.Min(values);
        var max = System.Numerics.Tensors.TensorPrimitives.Max(values);
        if (!float.IsFinite(min) || !float.IsFinite(max))
        {
            throw new InvalidDataException("calibration produced a non-finite activation; the backbone graph or its input pixels are broken");
        }

        Min = Math.Min(Min, min);
        Max = Math.Max(Max, max);
        var magnitude = Math.Max(-min, max);
        if (_range == 0)
        {
            _range = magnitude > 0 ? magnitude * 1.001f : 1f;
        }

        while (magnitude >= _range)
        {
            Grow();
        }

        var scale = Bins / _range;
        foreach (var value in values)
        {
            if (value > 0)
            {
                _positive[Math.Min(Bins - 1, (int)(value * scale))]++;
            }
            else if (value < 0)
            {
                _negative[Math.Min(Bins - 1, (int)(-value * scale))]++;
            }
        }

        Count += values.Length;
    }

    /// <summary>
    /// The smallest bin edge above which at most <paramref name="share"/> of all values lie (never beyond <see cref="Max"/>;
    /// 0 when no value is positive).
    /// </summary>
    public float Upper(double share) => Math.Min(Max, Edge(_positive, share));

    /// <summary>The mirror of <see cref="Upper"/> for the negative tail (0 when no value is negative).</summary>
    public float Lower(double share) => Math.Max(Min, -Edge(_negative, share));

    private float Edge(long[] bins, double share)
    {
        var allowed = (long)Math.Floor(share * Count);
        long above = 0;
        for (var bin = Bins - 1; bin >= 0; bin--)
        {
            if (above + bins[bin] > allowed)
            {
                return (bin + 1) * (_range / Bins);
            }

            above += bins[bin];
        }

        return 0;
    }

    private void Grow()
    {
        foreach (var bins in new[] { _positive, _negative })
        {
            for (var i = 0; i < Bins / 2; i++)
            {
                bins[i] = bins[2 * i] + bins[2 * i + 1];
            }

            Array.Clear(bins, Bins / 2, Bins / 2);
        }

        _range *= 2;
    }
}
