using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using MlNetFinetune.Evaluation;
using MlNetFinetune.Prediction;
using MlNetFinetune.Predictor.Serving;

namespace MlNetFinetune.Tests;

/// <summary>A started server on a free loopback port and a client for it.</summary>
public sealed class RunningServer : IAsyncDisposable
{
    public const string LoopbackAnyPort = "http://127.0.0.1:0";

    private RunningServer(WebApplication app)
    {
        App = app;
        var address = new Uri(Assert.Single(app.Urls));
        Assert.True(IPAddress.IsLoopback(IPAddress.Parse(address.Host)), $"server listens on {address}");
        Client = new HttpClient { BaseAddress = address };
    }

    public WebApplication App { get; }

    public HttpClient Client { get; }

    public static async Task<RunningServer> StartAsync(ServeOptions options)
    {
        var app = PredictionServer.Build(options);
        await app.StartAsync();
        return new RunningServer(app);
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await App.DisposeAsync();
    }
}

/// <summary>One server over the sample model, shared by the tests of a class.</summary>
public sealed class ServerFixture(SampleModelFixture model) : IAsyncLifetime
{
    /// <summary>Small enough that a test can exceed it cheaply, large enough for the 28x28 sample PNGs in a multipart form.</summary>
    public const long MaxBodyBytes = 16 * 1024;

    private RunningServer? _server;

    public SampleModelFixture Model { get; } = model;

    public HttpClient Client => _server!.Client;

    public async Task InitializeAsync() =>
        _server = await RunningServer.StartAsync(new ServeOptions(Model.Result.ModelPath, RunningServer.LoopbackAnyPort, MaxBodyBytes));

    public async Task DisposeAsync() => await _server!.DisposeAsync();
}

[Collection(SampleModelCollection.Name)]
public sealed class PredictionServerTests(ServerFixture server) : IClassFixture<ServerFixture>
{
    private HttpClient Client => server.Client;

    private string SampleImage(int index = 0) => server.Model.Result.HeldOutPredictions[index].Path;

    private static async Task AssertErrorAsync(HttpResponseMessage response, HttpStatusCode status, params string[] messageParts)
    {
        Assert.Equal(status, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var error = (await response.Content.ReadFromJsonAsync<ErrorResponse>())!.Error;
        Assert.All(messageParts, part => Assert.Contains(part, error));
        Assert.DoesNotContain('\n', error);
    }

    private static ByteArrayContent Raw(byte[] bytes) => new(bytes) { Headers = { ContentType = new MediaTypeHeaderValue("application/octet-stream") } };

    [Fact]
    public async Task PredictGivesTheLibrarysAnswerForRawBytesAndForAnUpload()
    {
        using var classifier = ImageClassifier.Load(server.Model.Result.ModelPath);
        for (var i = 0; i < 5; i++)
        {
            var file = SampleImage(i);
            var expected = classifier.Predict(file, top: 10);

            using var raw = await Client.PostAsync("/predict?top=10", Raw(File.ReadAllBytes(file)));
            using var form = new MultipartFormDataContent { { new ByteArrayContent(File.ReadAllBytes(file)), PredictionEndpoints.FileField, Path.GetFileName(file) } };
            using var upload = await Client.PostAsync("/predict?top=10", form);

            foreach (var response in new[] { raw, upload })
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                var actual = (await response.Content.ReadFromJsonAsync<ClassificationResult>())!;
                Assert.Equal(expected.Label, actual.Label);
                Assert.Equal(expected.Confidence, actual.Confidence);
                Assert.Equal(expected.Top, actual.Top);
            }
        }
    }

    [Fact]
    public async Task PredictListsThreeClassesUnlessAskedAndTheFieldsAreCamelCase()
    {
        using var response = await Client.PostAsync("/predict", Raw(File.ReadAllBytes(SampleImage())));
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());

        Assert.Equal(PredictionEndpoints.DefaultTop, json.RootElement.GetProperty("top").GetArrayLength());
        Assert.Equal(json.RootElement.GetProperty("label").GetString(), json.RootElement.GetProperty("top")[0].GetProperty("label").GetString());
        Assert.True(json.RootElement.GetProperty("confidence").GetSingle() > 0);
        Assert.True(json.RootElement.GetProperty("top")[0].TryGetProperty("score", out _));
    }

    [Fact]
    public async Task HealthSaysOk()
    {
        using var json = JsonDocument.Parse(await Client.GetStringAsync("/health"));

        Assert.Equal("ok", json.RootElement.GetProperty("status").GetString());
    }

    [Fact]
    public async Task ModelIsTheManifest()
    {
        var served = JsonSerializer.Deserialize<ModelManifest>(await Client.GetStringAsync("/model"), ReportWriter.JsonOptions)!;
        var manifest = ModelManifest.ReadFrom(server.Model.Result.ModelPath);

        Assert.Equal(manifest.Classes, served.Classes);
        Assert.Equal(manifest with { Classes = served.Classes }, served);
    }

    [Fact]
    public async Task BodyOverTheLimitIs413WithOrWithoutContentLength()
    {
        var bytes = new byte[ServerFixture.MaxBodyBytes + 1];

        // The server answers 413 from the declared length without reading the body; with Expect: 100-continue (as curl
        // sends for large bodies) the client waits for that answer instead of racing to send what will not be read.
        using var oversized = new HttpRequestMessage(HttpMethod.Post, "/predict") { Content = Raw(bytes) };
        oversized.Headers.ExpectContinue = true;
        using var declared = await Client.SendAsync(oversized);
        await AssertErrorAsync(declared, HttpStatusCode.RequestEntityTooLarge, $"{ServerFixture.MaxBodyBytes} bytes", "--max-body-bytes");

        // Without a length, HttpClient sends the body chunked and Kestrel stops reading at the limit.
        using var chunked = new StreamContent(new NoLengthStream(bytes));
        using var streamed = await Client.PostAsync("/predict", chunked);
        await AssertErrorAsync(streamed, HttpStatusCode.RequestEntityTooLarge, "--max-body-bytes");
    }

    [Fact]
    public async Task ImageDeclaringTooManyPixelsIs422WithoutDecoding()
    {
        var png = File.ReadAllBytes(SampleImage());
        BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(16), 100_000);
        BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(20), 100_000);

        using var response = await Client.PostAsync("/predict", Raw(png));

        await AssertErrorAsync(response, HttpStatusCode.UnprocessableEntity, "100000x100000", $"{ServeOptions.DefaultMaxPixels}", "--max-pixels");
    }

    [Fact]
    public async Task BytesOfNoKnownFormatAre415()
    {
        using var response = await Client.PostAsync("/predict", Raw("<html>not an image</html>"u8.ToArray()));

        await AssertErrorAsync(response, HttpStatusCode.UnsupportedMediaType, "request body", "not a PNG, JPEG, GIF, BMP or WebP image");
    }

    [Fact]
    public async Task BrokenImagesAndBadRequestsAre400()
    {
        var png = File.ReadAllBytes(SampleImage());
        var garbled = png[..33].Concat(Enumerable.Repeat((byte)0x5A, 64)).ToArray();
        using var undecodable = await Client.PostAsync("/predict", Raw(garbled));
        await AssertErrorAsync(undecodable, HttpStatusCode.BadRequest, "request body: truncated PNG");

        using var truncatedHeader = await Client.PostAsync("/predict", Raw(png[..12]));
        await AssertErrorAsync(truncatedHeader, HttpStatusCode.BadRequest, "PNG header is truncated");

        using var empty = await Client.PostAsync("/predict", Raw([]));
        await AssertErrorAsync(empty, HttpStatusCode.BadRequest, "empty");

        using var noFile = await Client.PostAsync("/predict", new MultipartFormDataContent { { new StringContent("x"), "note" } });
        await AssertErrorAsync(noFile, HttpStatusCode.BadRequest, "no file", PredictionEndpoints.FileField);

        using var badTop = await Client.PostAsync("/predict?top=0", Raw(png));
        await AssertErrorAsync(badTop, HttpStatusCode.BadRequest, "top=0");
    }

    [Fact]
    public async Task UnknownPathIs404WithTheEndpoints()
    {
        using var response = await Client.GetAsync("/predictions");

        await AssertErrorAsync(response, HttpStatusCode.NotFound, "POST /predict");
    }

    /// <summary>A stream that does not know its length, so HttpClient has to send it chunked.</summary>
    private sealed class NoLengthStream(byte[] bytes) : MemoryStream(bytes)
    {
        public override bool CanSeek => false;
    }
}
