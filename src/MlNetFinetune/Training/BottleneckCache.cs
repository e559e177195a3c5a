using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using System.Text;

namespace MlNetFinetune.Training;

/// <summary>
/// Bottleneck features on disk, so the backbone runs once per image across runs. One folder per backbone fingerprint;
/// inside, append-only record files. Each writing process holds its own file, claimed with an exclusive lock, so runs
/// that share a workspace (or shards on several machines) never write into one file; a later run reuses a free file.
/// Every record carries a CRC-32 of its key and values: a torn or corrupted record is ignored and counted, and its
/// image is recomputed, so a killed run or a flipped bit never feeds wrong features to a head.
/// </summary>
internal sealed class BottleneckCache : IDisposable
{
    private const string FileExtension = ".bottlenecks";
    private const string LockExtension = ".lock";
    private static readonly byte[] s_magic = "MNFBNK02"u8.ToArray();

    private readonly ConcurrentDictionary<string, float[]> _features = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _wholeRecordsLength = new(StringComparer.Ordinal);
    private readonly Lock _writeLock = new();
    private FileStream? _writer;
    private FileStream? _writerLock;

    private BottleneckCache(string directory, int featureSize)
    {
        Directory = directory;
        FeatureSize = featureSize;
    }

    /// <summary>The folder of this backbone fingerprint's record files.</summary>
    public string Directory { get; }

    /// <summary>Values per feature vector.</summary>
    public int FeatureSize { get; }

    /// <summary>Records on disk when the cache was opened.</summary>
    public int LoadedCount { get; private set; }

    /// <summary>Records on disk that failed their checksum (the rest of such a file is not trusted); their images are recomputed.</summary>
    public int CorruptCount { get; private set; }

    /// <summary>Records added since the cache was opened.</summary>
    public int AddedCount { get; private set; }

    /// <summary>Feature vectors held.</summary>
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

    /// <summary>The features cached under <paramref name="key"/>, if any.</summary>
    public bool TryGet(string key, out float[] features) => _features.TryGetValue(key, out features!);

    /// <summary>Whether features are cached under <paramref name="key"/>.</summary>
    public bool Contains(string key) => _features.ContainsKey(key);

    /// <summary>
    /// Appends records and flushes them to a file of this process's own, named after <paramref name="writerName"/>
    /// (e.g. "run" or "shard-2-of-8", with a number added while another process holds that name). Safe to call from several threads.
    /// </summary>
    public void Add(IReadOnlyList<(string Key, float[] Features)> records, string writerName = "run")
    {
        lock (_writeLock)
        {
            _writer ??= OpenWriter(writerName);
            var buffer = new MemoryStream();
            foreach (var (key, features) in records)
            {
                if (features.Length != FeatureSize)
                {
                    throw new ArgumentException($"feature vector of {features.Length} values for a cache of {FeatureSize}", nameof(records));
                }

                WriteRecord(buffer, key, features);
                if (_features.TryAdd(key, features))
                {
                    AddedCount++;
                }
            }

            _writer.Write(buffer.GetBuffer(), 0, (int)buffer.Length);
            _writer.Flush(flushToDisk: false);
        }
    }

    /// <summary>Closes this process's record file and gives up its claim.</summary>
    public void Dispose()
    {
        lock (_writeLock)
        {
            _writer?.Dispose();
            _writer = null;
            _writerLock?.Dispose();
            _writerLock = null;
        }
    }

    private static void WriteRecord(Stream stream, string key, float[] features)
    {
        var keyBytes = Encoding.UTF8.GetBytes(key);
        var values = MemoryMarshal.AsBytes(features.AsSpan());
        Span<byte> length = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(length, checked((ushort)keyBytes.Length));
        var crc = new Crc32();
        crc.Append(keyBytes);
        crc.Append(values);
        stream.Write(length);
        stream.Write(keyBytes);
        stream.Write(values);
        stream.Write(crc.GetCurrentHash());
    }

    /// <summary>
    /// Claims the first record file named after <paramref name="writerName"/> that no other process holds: the claim
    /// is an exclusive lock on a companion lock file, held until <see cref="Dispose"/> (the kernel drops it if the
    /// process dies), so two runs on one workspace never append to, or cut short, one file.
    /// </summary>
    private FileStream OpenWriter(string writerName)
    {
        for (var attempt = 0; ; attempt++)
        {
            var name = attempt == 0 ? writerName : $"{writerName}-{attempt}";
            var path = Path.Combine(Directory, name + FileExtension);
            FileStream claim;
            try
            {
                claim = new FileStream(path + LockExtension, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (attempt < 1000)
            {
                continue;
            }

            _writerLock = claim;

            // Records appended by an earlier holder after this process loaded the file are read now, so that the cut
            // to whole records below never drops them; the part read at load is not read again.
            var validLength = ReadRecords(path, _wholeRecordsLength.GetValueOrDefault(path), (key, features) => _features.TryAdd(key, features));
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
    }

    private void Load(string path) => _wholeRecordsLength[path] = ReadRecords(path, 0, (key, features) => _features.TryAdd(key, features));

    /// <summary>
    /// Streams the records from <paramref name="start"/> (0: the file's start, else the end of a record read before)
    /// and returns the length of the valid prefix. A record cut short (a killed writer) ends it; so does a record whose
    /// checksum fails, which is counted: its length field may be the corrupted part, so nothing after it can be trusted.
    /// A file of another format or feature size is ignored.
    /// </summary>
    private long ReadRecords(string path, long start, Action<string, float[]> onRecord)
    {
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1 << 20);
        }
        catch (FileNotFoundException)
        {
            return 0;
        }

        using (stream)
        {
            var header = new byte[s_magic.Length + 4];
            if (stream.ReadAtLeast(header, header.Length, throwOnEndOfStream: false) < header.Length
                || !header.AsSpan(0, s_magic.Length).SequenceEqual(s_magic)
                || BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(s_magic.Length)) != FeatureSize)
            {
                return 0;
            }

            long position = Math.Max(start, header.Length);
            stream.Seek(position, SeekOrigin.Begin);
            var featureBytes = FeatureSize * sizeof(float);
            var keyLength = new byte[2];
            var key = new byte[ushort.MaxValue];
            var checksum = new byte[4];
            var crc = new Crc32();
            while (stream.ReadAtLeast(keyLength, 2, throwOnEndOfStream: false) == 2)
            {
                var length = BinaryPrimitives.ReadUInt16LittleEndian(keyLength);
                var features = new float[FeatureSize];
                var values = MemoryMarshal.AsBytes(features.AsSpan());
                if (stream.ReadAtLeast(key.AsSpan(0, length), length, throwOnEndOfStream: false) < length
                    || stream.ReadAtLeast(values, featureBytes, throwOnEndOfStream: false) < featureBytes
                    || stream.ReadAtLeast(checksum, 4, throwOnEndOfStream: false) < 4)
                {
                    break;
                }

                crc.Reset();
                crc.Append(key.AsSpan(0, length));
                crc.Append(values);
                if (crc.GetCurrentHashAsUInt32() != BinaryPrimitives.ReadUInt32LittleEndian(checksum))
                {
                    CorruptCount++;
                    break;
                }

                position += 2 + length + featureBytes + 4;
                onRecord(Encoding.UTF8.GetString(key, 0, length), features);
            }

            return position;
        }
    }
}
