using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Text;

namespace MlNetFinetune.Training;

/// <summary>
/// Bottleneck features on disk, so the backbone runs once per image across runs. One folder per backbone fingerprint;
/// inside, append-only record files (one per writer: a run, or a shard of a sharded run). A record is complete or it is
/// ignored, so a killed featurization keeps every record it flushed and the next run computes only the rest.
/// </summary>
public sealed class BottleneckCache : IDisposable
{
    private const string FileExtension = ".bottlenecks";
    private static readonly byte[] s_magic = "MNFBNK01"u8.ToArray();

    private readonly ConcurrentDictionary<string, float[]> _features = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _wholeRecordsLength = new(StringComparer.Ordinal);
    private readonly Lock _writeLock = new();
    private FileStream? _writer;

    private BottleneckCache(string directory, int featureSize)
    {
        Directory = directory;
        FeatureSize = featureSize;
    }

    public string Directory { get; }

    public int FeatureSize { get; }

    /// <summary>Records on disk when the cache was opened.</summary>
    public int LoadedCount { get; private set; }

    /// <summary>Records added since the cache was opened.</summary>
    public int AddedCount { get; private set; }

    public int Count => _features.Count;

    /// <summary>Opens (creating if needed) the cache for one backbone fingerprint under <paramref name="workspace"/>.</summary>
    public static BottleneckCache Open(string workspace, string fingerprint, int featureSize)
    {
        var directory = Path.Combine(workspace, "bottlenecks", fingerprint);
        System.IO.Directory.CreateDirectory(directory);
        var cache = new BottleneckCache(directory, featureSize);
        foreach (var file in System.IO.Directory.GetFiles(directory, "*" + FileExtension).Order(StringComparer.Ordinal))
        {
            cache.Load(file);
        }

        cache.LoadedCount = cache._features.Count;
        return cache;
    }

    public bool TryGet(string key, out float[] features) => _features.TryGetValue(key, out features!);

    public bool Contains(string key) => _features.ContainsKey(key);

    /// <summary>
    /// Appends records and flushes them to the file named <paramref name="writerName"/> (e.g. "run" or "shard-2-of-8").
    /// Safe to call from several threads.
    /// </summary>
    public void Add(IReadOnlyList<(string Key, float[] Features)> records, string writerName = "run")
    {
        lock (_writeLock)
        {
            _writer ??= OpenWriter(writerName);
            var keyBuffer = new byte[1024];
            var header = new byte[2];
            foreach (var (key, features) in records)
            {
                if (features.Length != FeatureSize)
                {
                    throw new ArgumentException($"feature vector of {features.Length} values for a cache of {FeatureSize}", nameof(records));
                }

                var keyLength = Encoding.UTF8.GetBytes(key, keyBuffer);
                BinaryPrimitives.WriteUInt16LittleEndian(header, (ushort)keyLength);
                _writer.Write(header);
                _writer.Write(keyBuffer, 0, keyLength);
                _writer.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(features.AsSpan()));
                if (_features.TryAdd(key, features))
                {
                    AddedCount++;
                }
            }

            _writer.Flush(flushToDisk: false);
        }
    }

    public void Dispose()
    {
        lock (_writeLock)
        {
            _writer?.Dispose();
            _writer = null;
        }
    }

    private FileStream OpenWriter(string writerName)
    {
        var path = Path.Combine(Directory, writerName + FileExtension);
        // A torn last record left by a killed run is cut off, so new records follow whole ones.
        var validLength = _wholeRecordsLength.GetValueOrDefault(path);
        var stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read);
        stream.SetLength(validLength);
        if (validLength == 0)
        {
            stream.Write(s_magic);
            Span<byte> size = stackalloc byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(size, FeatureSize);
            stream.Write(size);
        }

        stream.Seek(0, SeekOrigin.End);
        return stream;
    }

    private void Load(string path) => _wholeRecordsLength[path] = ReadRecords(path, (key, features) => _features.TryAdd(key, features));

    /// <summary>Streams whole records, returns the length they cover; a file of another feature size is ignored.</summary>
    private long ReadRecords(string path, Action<string, float[]> onRecord)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1 << 20);
        var header = new byte[s_magic.Length + 4];
        if (stream.ReadAtLeast(header, header.Length, throwOnEndOfStream: false) < header.Length
            || !header.AsSpan(0, s_magic.Length).SequenceEqual(s_magic)
            || BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(s_magic.Length)) != FeatureSize)
        {
            return 0;
        }

        long position = header.Length;
        var featureBytes = FeatureSize * sizeof(float);
        var keyLength = new byte[2];
        var key = new byte[ushort.MaxValue];
        while (stream.ReadAtLeast(keyLength, 2, throwOnEndOfStream: false) == 2)
        {
            var length = BinaryPrimitives.ReadUInt16LittleEndian(keyLength);
            var features = new float[FeatureSize];
            if (stream.ReadAtLeast(key.AsSpan(0, length), length, throwOnEndOfStream: false) < length
                || stream.ReadAtLeast(System.Runtime.InteropServices.MemoryMarshal.AsBytes(features.AsSpan()), featureBytes, throwOnEndOfStream: false) < featureBytes)
            {
                break;
            }

            onRecord(Encoding.UTF8.GetString(key, 0, length), features);
            position += 2 + length + featureBytes;
        }

        return position;
    }
}
