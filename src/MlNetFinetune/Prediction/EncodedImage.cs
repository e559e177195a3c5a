using System.Buffers;
using System.Globalization;
using Microsoft.ML.Data;
using MlNetFinetune.Images;

namespace MlNetFinetune.Prediction;

/// <summary>Encoded image bytes from streams, read within <see cref="ImageLimits.MaxEncodedBytes"/>.</summary>
internal static class EncodedImage
{
    private const int ChunkSize = 81920;

    /// <summary>Decodes within <paramref name="limits"/> (pixels decided from the real frame sizes before decoding); throws <see cref="InvalidImageException"/>.</summary>
    public static MLImage Decode(byte[] encoded, string source, ImageLimits limits, AlphaPolicy alpha) => ImageDecoder.Decode(encoded, source, limits, alpha);

    /// <summary>Reads <paramref name="stream"/> to its end; throws <see cref="InvalidImageException"/> (too large) once it holds more than the limit.</summary>
    public static byte[] Read(Stream stream, ImageLimits limits, string source)
    {
        EnsureDeclaredLength(stream, limits, source);
        var buffer = new Accumulator(limits.MaxEncodedBytes, source);
        var chunk = ArrayPool<byte>.Shared.Rent(ChunkSize);
        try
        {
            int read;
            while ((read = stream.Read(chunk, 0, ChunkSize)) > 0)
            {
                buffer.Append(chunk.AsSpan(0, read));
            }

            return buffer.ToArray();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }
    }

    /// <summary>Reads <paramref name="stream"/> to its end asynchronously; throws <see cref="InvalidImageException"/> (too large) once it holds more than the limit.</summary>
    public static async Task<byte[]> ReadAsync(Stream stream, ImageLimits limits, string source, CancellationToken cancellationToken)
    {
        EnsureDeclaredLength(stream, limits, source);
        var buffer = new Accumulator(limits.MaxEncodedBytes, source);
        var chunk = ArrayPool<byte>.Shared.Rent(ChunkSize);
        try
        {
            int read;
            while ((read = await stream.ReadAsync(chunk.AsMemory(0, ChunkSize), cancellationToken).ConfigureAwait(false)) > 0)
            {
                buffer.Append(chunk.AsSpan(0, read));
            }

            return buffer.ToArray();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }
    }

    private static void EnsureDeclaredLength(Stream stream, ImageLimits limits, string source)
    {
        if (stream.CanSeek && stream.Length - stream.Position > limits.MaxEncodedBytes)
        {
            throw TooLarge(source, stream.Length - stream.Position, limits.MaxEncodedBytes);
        }
    }

    private static InvalidImageException TooLarge(string source, long? bytes, long maxBytes) => new(source, ImageProblem.TooLarge, string.Create(CultureInfo.InvariantCulture,
        $"{(bytes is { } length ? $"{length} bytes" : "more bytes")} than the limit of {maxBytes} bytes for an encoded image"));

    /// <summary>Collects bytes up to a limit, growing by doubling like a MemoryStream but never past the limit.</summary>
    private sealed class Accumulator(long maxBytes, string source)
    {
        private byte[] _bytes = [];
        private int _length;

        public void Append(ReadOnlySpan<byte> data)
        {
            if (_length + (long)data.Length > maxBytes)
            {
                throw TooLarge(source, null, maxBytes);
            }

            if (_length + data.Length > _bytes.Length)
            {
                Array.Resize(ref _bytes, (int)Math.Min(maxBytes, Math.Max(_length + data.Length, Math.Max(ChunkSize, (long)_bytes.Length * 2))));
            }

            data.CopyTo(_bytes.AsSpan(_length));
            _length += data.Length;
        }

        public byte[] ToArray() => _length == _bytes.Length ? _bytes : _bytes[.._length];
    }
}
