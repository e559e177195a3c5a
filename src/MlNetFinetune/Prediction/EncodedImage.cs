using System.Buffers;
using System.Globalization;
using Microsoft.ML.Data;
using MlNetFinetune.Pipeline;

namespace MlNetFinetune.Prediction;

/// <summary>Encoded image bytes from files and streams, read within a byte limit, and their decoding.</summary>
internal static class EncodedImage
{
    private const int ChunkSize = 81920;

    /// <summary>
    /// Decodes <paramref name="encoded"/> unless its header declares more than <paramref name="maxPixels"/> pixels: a
    /// 69-byte PNG may declare 65535x65535, 17 GB once decoded. Throws <see cref="InvalidDataException"/> naming the source.
    /// </summary>
    public static MLImage Decode(byte[] encoded, string source, long maxPixels)
    {
        if (ImageHeader.DetectFormat(encoded) is not null && ImageHeader.Read(encoded, source) is { } header && header.Pixels > maxPixels)
        {
            throw new InvalidDataException(string.Create(CultureInfo.InvariantCulture,
                $"{source}: {header.Format} declares {header.Width}x{header.Height} = {header.Pixels} pixels, more than the limit of {maxPixels}"));
        }

        return ImageDecoder.Decode(encoded, source);
    }

    /// <summary>Reads <paramref name="stream"/> to its end; throws <see cref="InvalidDataException"/> once it holds more than <paramref name="maxBytes"/>.</summary>
    public static byte[] Read(Stream stream, long maxBytes, string source)
    {
        EnsureDeclaredLength(stream, maxBytes, source);
        var buffer = new Accumulator(maxBytes, source);
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

    /// <summary>Reads <paramref name="stream"/> to its end asynchronously; throws <see cref="InvalidDataException"/> once it holds more than <paramref name="maxBytes"/>.</summary>
    public static async Task<byte[]> ReadAsync(Stream stream, long maxBytes, string source, CancellationToken cancellationToken)
    {
        EnsureDeclaredLength(stream, maxBytes, source);
        var buffer = new Accumulator(maxBytes, source);
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

    /// <summary>Reads an image file within <paramref name="maxBytes"/>; throws <see cref="InvalidDataException"/> naming the file when it cannot.</summary>
    public static byte[] ReadFile(string path, long maxBytes)
    {
        EnsureNotEmpty(path);
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);
            return Read(file, maxBytes, path);
        }
        catch (Exception e) when (e is (IOException or UnauthorizedAccessException) and not InvalidDataException)
        {
            throw new InvalidDataException($"{path}: cannot read ({e.Message})", e);
        }
    }

    /// <summary>Reads an image file asynchronously within <paramref name="maxBytes"/>.</summary>
    public static async Task<byte[]> ReadFileAsync(string path, long maxBytes, CancellationToken cancellationToken)
    {
        EnsureNotEmpty(path);
        try
        {
            await using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.Asynchronous | FileOptions.SequentialScan);
            return await ReadAsync(file, maxBytes, path, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is (IOException or UnauthorizedAccessException) and not InvalidDataException)
        {
            throw new InvalidDataException($"{path}: cannot read ({e.Message})", e);
        }
    }

    /// <summary>
    /// An empty file is refused without opening it: a FIFO (named pipe) or a device also reports 0 bytes, and opening a
    /// FIFO waits until some other process writes to it, which may be never.
    /// </summary>
    private static void EnsureNotEmpty(string path)
    {
        if (new FileInfo(path) is { Exists: true, Length: 0 })
        {
            throw new InvalidDataException($"{path}: empty file (0 bytes), or not a regular file");
        }
    }

    private static void EnsureDeclaredLength(Stream stream, long maxBytes, string source)
    {
        if (stream.CanSeek && stream.Length - stream.Position > maxBytes)
        {
            throw TooLarge(source, stream.Length - stream.Position, maxBytes);
        }
    }

    private static InvalidDataException TooLarge(string source, long? bytes, long maxBytes) => new(string.Create(CultureInfo.InvariantCulture,
        $"{source}: {(bytes is { } length ? $"{length} bytes" : "more bytes")} than the limit of {maxBytes} bytes for an image"));

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
