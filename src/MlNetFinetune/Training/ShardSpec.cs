using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace MlNetFinetune.Training;

/// <summary>
/// One of <see cref="Count"/> deterministic parts of an image set, for featurizing on several machines: an image
/// belongs to the shard its path (relative to the data folder) hashes to, so every machine agrees without talking.
/// </summary>
/// <param name="Number">1-based shard number.</param>
/// <param name="Count">Number of shards.</param>
public sealed record ShardSpec(int Number, int Count)
{
    /// <summary>Parses "k/n"; throws <see cref="UserInputException"/> for anything else.</summary>
    public static ShardSpec Parse(string text)
    {
        var parts = text.Split('/');
        if (parts.Length != 2
            || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var number)
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var count)
            || count < 1 || number < 1 || number > count)
        {
            throw new UserInputException($"--shard {text}: expected k/n with 1 <= k <= n, e.g. 3/8");
        }

        return new ShardSpec(number, count);
    }

    /// <summary>Name of the cache file this shard writes, so shards never write to one file.</summary>
    public string WriterName => string.Create(CultureInfo.InvariantCulture, $"shard-{Number}-of-{Count}");

    /// <summary>Whether the image at <paramref name="relativePath"/> (relative to the data folder) belongs to this shard, by a hash of the path.</summary>
    public bool Contains(string relativePath)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(relativePath.Replace('\\', '/')));
        return (int)(BinaryPrimitives.ReadUInt32LittleEndian(hash) % (uint)Count) == Number - 1;
    }

    /// <summary>The shard as <c>--shard</c> writes it: <c>k/n</c>.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Number}/{Count}");
}
