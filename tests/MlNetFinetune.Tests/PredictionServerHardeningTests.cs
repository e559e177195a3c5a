using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using MlNetFinetune.Predictor.Serving;

namespace MlNetFinetune.Tests;

/// <summary>What a hostile web page, a slow or broken client and a crowd of large uploads get from <c>serve</c>.</summary>
[Collection(SampleModelCollection.Name)]
public sealed class PredictionServerHardeningTests(SampleModelFixture fixture)
{
    private string SampleImage => fixture.Result.HeldOutPredictions[0].Path;

    private Task<RunningServer> StartAsync(Func<ServeOptions, ServeOptions>? configure = null) =>
        RunningServer.StartAsync((configure ?? (o => o))(new ServeOptions(fixture.Result.ModelPath, RunningServer.LoopbackAnyPort, MaxConcurrency: 1)));

    private static async Task<string> ErrorOf(HttpResponseMessage response) => (await response.Content.ReadFromJsonAsync<ErrorResponse>())!.Error;

    private HttpRequestMessage Post(string? host = null, string? origin = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/predict")
        {
            // A page can send text/plain across origins without asking first (a "simple" request).
            Content = new ByteArrayContent(File.ReadAllBytes(SampleImage)) { Headers = { ContentType = new MediaTypeHeaderValue("text/plain") } },
        };
        if (host is not null)
        {
            request.Headers.Host = host;
        }

        if (origin is not null)
        {
            request.Headers.Add("Origin", origin);
        }

        return request;
    }

    [Fact]
    public async Task APageOnAnotherSiteCannotCallTheServer()
    {
        await using var server = await StartAsync();
        var own = server.Client.BaseAddress!;

        using var rebound = await server.Client.SendAsync(Post(host: "attacker.example"));
        using var crossOrigin = await server.Client.SendAsync(Post(origin: "http://attacker.example"));
        using var sameOrigin = await server.Client.SendAsync(Post(origin: $"{own.Scheme}://{own.Authority}"));
        using var byName = await server.Client.SendAsync(Post(host: $"localhost:{own.Port}"));
        using var noOrigin = await server.Client.SendAsync(Post());

        Assert.Equal(HttpStatusCode.Forbidden, rebound.StatusCode);
        Assert.Contains("--allowed-hosts", await ErrorOf(rebound));
        Assert.Equal(HttpStatusCode.Forbidden, crossOrigin.StatusCode);
        Assert.Contains("--allowed-origins", await ErrorOf(crossOrigin));
        Assert.Equal(HttpStatusCode.OK, sameOrigin.StatusCode);
        Assert.Equal(HttpStatusCode.OK, byName.StatusCode);
        Assert.Equal(HttpStatusCode.OK, noOrigin.StatusCode);
    }

    [Fact]
    public async Task ConfiguredHostsAndOriginsAreServed()
    {
        await using var server = await StartAsync(o => o with { AllowedHosts = ["classifier.internal"], AllowedOrigins = ["https://app.example"] });

        using var named = await server.Client.SendAsync(Post(host: "classifier.internal"));
        using var app = await server.Client.SendAsync(Post(origin: "https://app.example"));
        using var other = await server.Client.SendAsync(Post(origin: "https://other.example"));
        using var preflight = await server.Client.SendAsync(new HttpRequestMessage(HttpMethod.Options, "/predict")
        {
            Headers = { { "Origin", "https://app.example" }, { "Access-Control-Request-Method", "POST" }, { "Access-Control-Request-Headers", "content-type" } },
        });

        Assert.Equal(HttpStatusCode.OK, named.StatusCode);
        Assert.Equal(HttpStatusCode.OK, app.StatusCode);
        Assert.Equal("https://app.example", app.Headers.GetValues("Access-Control-Allow-Origin").Single());
        Assert.Equal(HttpStatusCode.Forbidden, other.StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, preflight.StatusCode);
        Assert.Contains("POST", preflight.Headers.GetValues("Access-Control-Allow-Methods").Single());
        Assert.Equal("https://app.example", preflight.Headers.GetValues("Access-Control-Allow-Origin").Single());
    }

    [Fact]
    public async Task MultipartWithoutItsBoundaryIs400()
    {
        await using var server = await StartAsync();
        using var content = new ByteArrayContent(File.ReadAllBytes(SampleImage)) { Headers = { ContentType = new MediaTypeHeaderValue("multipart/form-data") } };

        using var response = await server.Client.PostAsync("/predict", content);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("boundary", await ErrorOf(response));
    }

    [Fact]
    public async Task ABodyTrickledAtTenBytesASecondIs408()
    {
        // Given a server that wants at least 240 bytes a second after two seconds of grace
        await using var server = await StartAsync(o => o with { BodyRateGracePeriod = TimeSpan.FromSeconds(2) });
        var address = server.Client.BaseAddress!;
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, address.Port);
        var stream = client.GetStream();

        // When a client declares 2000 bytes and sends one every 100 ms (bounded: it stops when answered or after 2000)
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"POST /predict HTTP/1.1\r\nHost: {address.Authority}\r\nContent-Type: application/octet-stream\r\nContent-Length: 2000\r\n\r\n"));
        var answer = ReadAllAsync(stream);
        for (var sent = 0; sent < 2000 && !answer.IsCompleted; sent++)
        {
            try
            {
                await stream.WriteAsync(new byte[] { 0x89 });
            }
            catch (IOException)
            {
                break;
            }

            await Task.WhenAny(answer, Task.Delay(100));
        }

        // Then
        var response = await answer.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.StartsWith("HTTP/1.1 408", response);
        Assert.Contains("request body", response);
    }

    [Fact]
    public async Task BodiesBeyondTheInFlightBudgetWaitUnreadAndAreThenAnswered()
    {
        // Given room for one body at a time, taken by a slow upload that has sent half of it
        using var slowForm = new MultipartFormDataContent
        {
            { new ByteArrayContent(File.ReadAllBytes(SampleImage)), PredictionEndpoints.FileField, "sample.png" },
            { new StringContent(new string('x', 14 * 1024)), "padding" },
        };
        var slowBody = await slowForm.ReadAsByteArrayAsync();
        await using var server = await StartAsync(o => o with { MaxBodyBytes = slowBody.Length + 100, MaxInFlightBytes = slowBody.Length + 100 });
        var budget = server.App.Services.GetRequiredService<BodyBudget>();
        var release = new TaskCompletionSource();
        var slow = new HalfThenRestContent(slowBody, release.Task) { Headers = { ContentType = slowForm.Headers.ContentType } };
        var slowResponse = server.Client.PostAsync("/predict", slow);
        await slow.HalfSent.WaitAsync(TimeSpan.FromSeconds(30));
        await WaitUntilAsync(() => budget.InUse == slowBody.Length);

        // When a small upload arrives, it waits for the budget
        var smallResponse = server.Client.PostAsync("/predict", new ByteArrayContent(File.ReadAllBytes(SampleImage)));
        await WaitUntilAsync(() => budget.Waiting == 1);

        // Then both are answered once the slow one completes, and the budget is whole again
        release.SetResult();
        using var first = await slowResponse.WaitAsync(TimeSpan.FromSeconds(60));
        using var second = await smallResponse.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        await WaitUntilAsync(() => budget.InUse == 0);
    }

    [Fact]
    public void InFlightBudgetBelowOneBodyIsRefusedBeforeLoading()
    {
        var outcome = CommandLineRunner.Predictor("serve", "--model", "missing.zip", "--max-body-bytes", "1000", "--max-inflight-bytes", "999");

        Assert.Equal(2, outcome.ExitCode);
        Assert.StartsWith("error: --max-inflight-bytes 999: must be at least --max-body-bytes (1000)", outcome.Error);
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not reached within 30 s");
            await Task.Delay(20);
        }
    }

    private static async Task<string> ReadAllAsync(NetworkStream stream)
    {
        var text = new StringBuilder();
        var buffer = new byte[4096];
        int read;
        while ((read = await stream.ReadAsync(buffer)) > 0)
        {
            text.Append(Encoding.UTF8.GetString(buffer, 0, read));
            if (text.ToString().Contains("\r\n\r\n", StringComparison.Ordinal) && text.ToString().Contains('}', StringComparison.Ordinal))
            {
                break;
            }
        }

        return text.ToString();
    }
}
