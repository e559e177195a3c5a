using System.Net;

namespace MlNetFinetune.Tests;

/// <summary>Sends half of the body, then waits for <c>release</c> before sending the rest: a slow client mid-request.</summary>
internal sealed class HalfThenRestContent(byte[] bytes, Task release) : HttpContent
{
    private readonly TaskCompletionSource _halfSent = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Task HalfSent => _halfSent.Task;

    protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
    {
        var half = bytes.Length / 2;
        await stream.WriteAsync(bytes.AsMemory(0, half));
        await stream.FlushAsync();
        _halfSent.SetResult();
        await release;
        await stream.WriteAsync(bytes.AsMemory(half));
    }

    protected override bool TryComputeLength(out long length)
    {
        length = bytes.Length;
        return true;
    }
}
