namespace MlNetFinetune.Training.FineTuning;

/// <summary>
/// Index tables that turn a convolution into one Gather and one matrix product (im2col), forward and backward.
/// Activations are NHWC, held as [N, positions, C]; a zero row is appended at index <c>positions</c>, and every
/// tap that falls into the padding points there, so the pads (asymmetric ones included) are exact by construction.
/// </summary>
internal static class ConvIndexTables
{
    /// <summary>
    /// For output position o and tap t (row-major, t = dy * kw + dx): the input position it reads, or the zero row.
    /// Gathering [N, H*W + 1, C] with it gives [N, Ho*Wo*taps, C], that is the [N*Ho*Wo, taps*C] column matrix.
    /// </summary>
    public static long[] Forward(ConvLayer conv)
    {
        var input = conv.InputShape;
        var output = conv.OutputShape;
        var zeroRow = input.Positions;
        var table = new long[output.Positions * conv.Taps];
        for (var oy = 0; oy < output.Height; oy++)
        {
            for (var ox = 0; ox < output.Width; ox++)
            {
                for (var dy = 0; dy < conv.KernelHeight; dy++)
                {
                    for (var dx = 0; dx < conv.KernelWidth; dx++)
                    {
                        var y = (oy * conv.Stride) - conv.PadTop + dy;
                        var x = (ox * conv.Stride) - conv.PadLeft + dx;
                        var inside = y >= 0 && y < input.Height && x >= 0 && x < input.Width;
                        table[((((oy * output.Width) + ox) * conv.KernelHeight) + dy) * conv.KernelWidth + dx] = inside ? (y * input.Width) + x : zeroRow;
                    }
                }
            }
        }

        return table;
    }

    /// <summary>
    /// The transpose of <see cref="Forward"/>: for input position p and tap t, the output position whose tap t read p,
    /// or the zero row of the output gradient. Each (p, t) has at most one such output, so the input gradient is a
    /// gather of the output gradient times the tap-transposed weights: no scatter, no accumulation order to worry about.
    /// </summary>
    public static long[] Backward(ConvLayer conv)
    {
        var input = conv.InputShape;
        var output = conv.OutputShape;
        var zeroRow = output.Positions;
        var table = new long[input.Positions * conv.Taps];
        for (var y = 0; y < input.Height; y++)
        {
            for (var x = 0; x < input.Width; x++)
            {
                for (var dy = 0; dy < conv.KernelHeight; dy++)
                {
                    for (var dx = 0; dx < conv.KernelWidth; dx++)
                    {
                        var sy = y + conv.PadTop - dy;
                        var sx = x + conv.PadLeft - dx;
                        var oy = sy / conv.Stride;
                        var ox = sx / conv.Stride;
                        var hit = sy >= 0 && sx >= 0 && sy % conv.Stride == 0 && sx % conv.Stride == 0 && oy < output.Height && ox < output.Width;
                        table[((((y * input.Width) + x) * conv.KernelHeight) + dy) * conv.KernelWidth + dx] = hit ? (oy * output.Width) + ox : zeroRow;
                    }
                }
            }
        }

        return table;
    }

    /// <summary>Whether <paramref name="table"/> points at the zero row anywhere (if not, the Pad that appends it can go).</summary>
    public static bool ReadsZeroRow(long[] table, int positions) => table.Any(i => i == positions);
}
