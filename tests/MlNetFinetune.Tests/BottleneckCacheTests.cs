using MlNetFinetune.Training;

namespace MlNetFinetune.Tests;

public sealed class BottleneckCacheTests : IDisposable
{
    private readonly string _workspace = Directory.CreateTempSubdirectory("mlnetfinetune-cache-").FullName;

    public void Dispose() => Directory.Delete(_workspace, recursive: true);

    private static float[] Vector(float value) => [value, value + 1, value + 2];

    [Fact]
    public void TwoRunsOnOneWorkspaceWriteToTheirOwnFiles()
    {
        // Given two caches open on one fingerprint at once, as two runs sharing a workspace
        // (before: both appended to run.bottlenecks and one's truncation and interleaving lost or mixed records)
        using (var first = BottleneckCache.Open(_workspace, "shared", 3))
        using (var second = BottleneckCache.Open(_workspace, "shared", 3))
        {
            // When
            first.Add([("a", Vector(1))]);
            second.Add([("b", Vector(2))]);
            first.Add([("c", Vector(3))]);
        }

        // Then
        var files = Directory.GetFiles(Path.Combine(_workspace, "bottlenecks", "shared"), "*.bottlenecks").Select(Path.GetFileName).Order(StringComparer.Ordinal);
        Assert.Equal(["run-1.bottlenecks", "run.bottlenecks"], files);
        using var reopened = BottleneckCache.Open(_workspace, "shared", 3);
        Assert.Equal(3, reopened.LoadedCount);
        Assert.True(reopened.TryGet("b", out var b));
        Assert.Equal(Vector(2), b);
    }

    [Fact]
    public void ALaterRunReusesTheFileOnceItsWriterIsDone()
    {
        using (var first = BottleneckCache.Open(_workspace, "reuse", 3))
        {
            first.Add([("a", Vector(1))]);
        }

        using (var second = BottleneckCache.Open(_workspace, "reuse", 3))
        {
            second.Add([("b", Vector(2))]);
        }

        Assert.Single(Directory.GetFiles(Path.Combine(_workspace, "bottlenecks", "reuse"), "*.bottlenecks"));
        using var reopened = BottleneckCache.Open(_workspace, "reuse", 3);
        Assert.Equal(2, reopened.LoadedCount);
    }

    [Fact]
    public void ARecordWithAFlippedBitIsDroppedCountedAndLeftToBeRecomputed()
    {
        // Given three records, the second with one bit flipped in its values (before: used silently)
        using (var cache = BottleneckCache.Open(_workspace, "flip", 3))
        {
            cache.Add([("a", Vector(1)), ("b", Vector(2)), ("c", Vector(3))]);
        }

        var file = Path.Combine(_workspace, "bottlenecks", "flip", "run.bottlenecks");
        var bytes = File.ReadAllBytes(file);
        var recordLength = 2 + 1 + 3 * sizeof(float) + 4;
        bytes[12 + recordLength + 2 + 1 + 5] ^= 0x10;
        File.WriteAllBytes(file, bytes);

        // When
        using var reopened = BottleneckCache.Open(_workspace, "flip", 3);

        // Then the good record before it is kept, the bad one is counted, and what follows it is not trusted
        Assert.Equal(1, reopened.LoadedCount);
        Assert.Equal(1, reopened.CorruptCount);
        Assert.True(reopened.TryGet("a", out _));
        Assert.False(reopened.Contains("b"));

        reopened.Add([("b", Vector(2))]);
        reopened.Dispose();
        using var repaired = BottleneckCache.Open(_workspace, "flip", 3);
        Assert.Equal(0, repaired.CorruptCount);
        Assert.True(repaired.TryGet("b", out var b));
        Assert.Equal(Vector(2), b);
    }
}
