using Microsoft.ML.OnnxRuntime;

namespace MlNetFinetune.Training.FineTuning;

/// <summary>
/// The frozen part's output for every image, in memory: NHWC maps as float16 (half the bytes of float32; the error
/// it adds is measured in the tests) or float32, in chunks of at most 2^27 values so no array nears .NET's limit.
/// Each image can have a second view: the map of the left-right mirrored image, run through the frozen part.
/// </summary>
internal sealed class FeatureMapStore
{
    private const int ChunkValues = 1 << 27;

    private readonly List<Array> _chunks = [];
    private readonly List<int> _labels = [];
    private readonly int _imagesPerChunk;

    public FeatureMapStore(MapShape shape, int views, bool fullPrecision)
    {
        Shape = shape;
        Views = views;
        FullPrecision = fullPrecision;
        _imagesPerChunk = Math.Max(1, ChunkValues / (shape.Size * views));
    }

    public MapShape Shape { get; }

    /// <summary>1, or 2 when each image also has its mirrored view.</summary>
    public int Views { get; }

    /// <summary>float32 maps rather than float16.</summary>
    public bool FullPrecision { get; }

    public int Count => _labels.Count;

    public IReadOnlyList<int> Labels => _labels;

    /// <summary>Bytes held by the maps (the last chunk may have up to twice the room it uses).</summary>
    public long Bytes => _chunks.Sum(c => (long)c.Length) * (FullPrecision ? 4 : 2);

    /// <summary>Appends one image: its <see cref="Views"/> maps, back to back in <paramref name="maps"/> from <paramref name="offset"/>.</summary>
    public void Add(OrtValue maps, int offset, int label)
    {
        var values = Shape.Size * Views;
        if (FullPrecision)
        {
            Add<float>(maps.GetTensorDataAsSpan<float>().Slice(offset, values), label);
        }
        else
        {
            Add<Float16>(maps.GetTensorDataAsSpan<Float16>().Slice(offset, values), label);
        }
    }

    /// <summary>Appends one image's <see cref="Views"/> maps, of this store's element type.</summary>
    public void Add<T>(ReadOnlySpan<T> maps, int label)
        where T : unmanaged
    {
        var slot = Count % _imagesPerChunk;
        var values = Shape.Size * Views;
        if (slot == 0)
        {
            _chunks.Add(NewBatch(Math.Min(_imagesPerChunk, 256) * Views));
        }
        else if ((slot + 1) * values > _chunks[^1].Length)
        {
            // The image count is not known up front: the last chunk grows by doubling, up to its full size.
            var grown = NewBatch(Math.Min(_imagesPerChunk, slot * 2) * Views);
            Array.Copy(_chunks[^1], grown, slot * values);
            _chunks[^1] = grown;
        }

        maps[..values].CopyTo(((T[])_chunks[^1]).AsSpan(slot * values));
        _labels.Add(label);
    }

    /// <summary>An array for <paramref name="images"/> maps of this store's element type (float16 or float32).</summary>
    public Array NewBatch(int images) => FullPrecision ? new float[images * Shape.Size] : new Float16[images * Shape.Size];

    /// <summary>Copies view <paramref name="view"/> of image <paramref name="index"/> into slot <paramref name="slot"/> of <paramref name="batch"/>, flipped and shifted as asked.</summary>
    public void CopyMap(int index, int view, Array batch, int slot, bool flip = false, int shiftY = 0, int shiftX = 0)
    {
        var chunk = _chunks[index / _imagesPerChunk];
        var start = (((index % _imagesPerChunk) * Views) + view) * Shape.Size;
        if (FullPrecision)
        {
            MapAugmentation.Apply<float>(((float[])chunk).AsSpan(start, Shape.Size), ((float[])batch).AsSpan(slot * Shape.Size, Shape.Size), Shape, flip, shiftY, shiftX);
        }
        else
        {
            MapAugmentation.Apply<Float16>(((Float16[])chunk).AsSpan(start, Shape.Size), ((Float16[])batch).AsSpan(slot * Shape.Size, Shape.Size), Shape, flip, shiftY, shiftX);
        }
    }
}

/// <summary>
/// Flips and shifts of cached NHWC maps. Flipping a mid-network map is not the map of the flipped image (the
/// kernels below are not mirror-symmetric, and the padding is asymmetric); what that costs in accuracy against
/// caching the mirrored image's own map is measured in the report of issue 12.
/// </summary>
internal static class MapAugmentation
{
    /// <summary>
    /// Writes <paramref name="source"/> mirrored left to right when <paramref name="flip"/>, then moved by
    /// (<paramref name="shiftY"/>, <paramref name="shiftX"/>) cells, repeating the edge cells into the space it leaves:
    /// the backgrounds of small centred images are uniform, so the repeated edge is what a shifted image would show.
    /// </summary>
    public static void Apply<T>(ReadOnlySpan<T> source, Span<T> target, MapShape shape, bool flip, int shiftY, int shiftX)
        where T : unmanaged
    {
        int height = shape.Height, width = shape.Width, channels = shape.Channels;
        if (!flip && shiftY == 0 && shiftX == 0)
        {
            source[..shape.Size].CopyTo(target);
            return;
        }

        for (var y = 0; y < height; y++)
        {
            var sy = Math.Clamp(y - shiftY, 0, height - 1);
            for (var x = 0; x < width; x++)
            {
                var sx = Math.Clamp(x - shiftX, 0, width - 1);
                if (flip)
                {
                    sx = width - 1 - sx;
                }

                source.Slice(((sy * width) + sx) * channels, channels).CopyTo(target.Slice(((y * width) + x) * channels, channels));
            }
        }
    }
}
