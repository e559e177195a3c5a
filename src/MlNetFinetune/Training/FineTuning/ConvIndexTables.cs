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

    /// <summary>
    /// For a strided convolution, <see cref="Backward"/> split by the parity of the input position: with stride s, an
    /// input position (y, x) is read only by the taps with dy ≡ y + padTop and dx ≡ x + padLeft (mod s), so each of the
    /// s² classes of positions needs only its own taps (3x3 stride 2: 1, 2, 2 and 4 of the 9), and the input gradient
    /// costs what the forward pass costs instead of s² times it. Returns, per class, its positions, its taps and its
    /// table (position-major, like <see cref="Backward"/>); null when some class has no tap (its gradient is zero, and
    /// the plain table is used).
    /// </summary>
    public static IReadOnlyList<(long[] Positions, long[] Taps, long[] Table)>? ParityClasses(ConvLayer conv)
    {
        var stride = conv.Stride;
        var full = Backward(conv);
        var classes = new List<(long[], long[], long[])>();
        for (var py = 0; py < stride; py++)
        {
            for (var px = 0; px < stride; px++)
            {
                var taps = new List<long>();
                for (var dy = 0; dy < conv.KernelHeight; dy++)
                {
                    for (var dx = 0; dx < conv.KernelWidth; dx++)
                    {
                        if ((py + conv.PadTop - dy) % stride == 0 && (px + conv.PadLeft - dx) % stride == 0)
                        {
                            taps.Add((dy * conv.KernelWidth) + dx);
                        }
                    }
                }

                if (taps.Count == 0)
                {
                    return null;
                }

                var positions = new List<long>();
                for (var y = py; y < conv.InputShape.Height; y += stride)
                {
                    for (var x = px; x < conv.InputShape.Width; x += stride)
                    {
                        positions.Add((y * conv.InputShape.Width) + x);
                    }
                }

                var table = positions.SelectMany(p => taps.Select(t => full[(p * conv.Taps) + t])).ToArray();
                classes.Add(([.. positions], [.. taps], table));
            }
        }

        return classes;
    }

    /// <summary>Whether <paramref name="table"/> points at the zero row anywhere (if not, the Pad that appends it can go).</summary>
    public static bool ReadsZeroRow(long[] table, int positions) => table.Any(i => i == positions);
}
