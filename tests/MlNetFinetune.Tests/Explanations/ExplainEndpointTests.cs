using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using MlNetFinetune.Explanations;
using MlNetFinetune.Prediction;
using MlNetFinetune.Predictor.Serving;
using SkiaSharp;

namespace MlNetFinetune.Tests.Explanations;

[Collection(SampleModelCollection.Name)]
public sealed class ExplainEndpointTests(ServerFixture server) : IClassFixture<ServerFixture>
{
    private HttpClient Client => server.Client;

    private byte[] SampleBytes(int index = 0) => File.ReadAllBytes(server.Model.Result.HeldOutPredictions[index].Path);

    private static ByteArrayContent Raw(byte[] bytes) => new(bytes) { Headers = { ContentType = new MediaTypeHeaderValue("application/octet-stream") } };

    private static async Task AssertErrorAsync(HttpResponseMessage response, HttpStatusCode status, params string[] messageParts)
    {
        Assert.Equal(status, response.StatusCode);
        var error = (await response.Content.ReadFromJsonAsync<ErrorResponse>())!.Error;
        Assert.All(messageParts, part => Assert.Contains(part, error));
    }

    [Fact]
    public async Task ExplainAnswersAPictureOfTheImageWithItsHeatMapAndTopClasses()
    {
        // Given a held-out image
        var bytes = SampleBytes();

        // When it is posted to /explain, as raw bytes and as an upload
        using var raw = await Client.PostAsync("/explain", Raw(bytes));
        using var form = new MultipartFormDataContent { { new ByteArrayContent(bytes), PredictionEndpoints.FileField, "item.png" } };
        using var upload = await Client.PostAsync("/explain", form);

        // Then both answers are the same decodable PNG picture
        foreach (var response in new[] { raw, upload })
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("image/png", response.Content.Headers.ContentType?.MediaType);
            using var picture = SKBitmap.Decode(await response.Content.ReadAsByteArrayAsync());
            Assert.NotNull(picture);
            Assert.True(picture.Width >= 500 && picture.Height >= 350, $"{picture.Width}x{picture.Height}");
        }
    }

    [Fact]
    public async Task JsonFormatGivesTheGridOfThePredictedClassAndTheSamePredictionAsPredict()
    {
        // Given a held-out image and /predict's answer for it
        var bytes = SampleBytes(1);
        using var predicted = await Client.PostAsync("/predict", Raw(bytes));
        var prediction = (await predicted.Content.ReadFromJsonAsync<ClassificationResult>())!;

        // When it is explained as JSON
        using var response = await Client.PostAsync("/explain?format=json", Raw(bytes));
        var explanation = (await response.Content.ReadFromJsonAsync<ExplanationResponse>())!;

        // Then the prediction is /predict's and the grid is the predicted class's, 8 rows of 8 cells
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(OcclusionMap.Method, explanation.Method);
        Assert.Equal(prediction.Label, explanation.Label);
        Assert.Equal(prediction.Confidence, explanation.Confidence, 4);
        Assert.Equal(prediction.Label, explanation.Class);
        Assert.Equal(explanation.Grid, explanation.Cells.Length);
        Assert.All(explanation.Cells, row => Assert.Equal(explanation.Grid, row.Length));
        Assert.Contains(explanation.Cells.SelectMany(r => r), v => v != 0);
    }

    [Fact]
    public async Task AnotherClassCanBeAskedFor()
    {
        var other = server.Model.Result.Report.ClassNames[^1];

        using var response = await Client.PostAsync($"/explain?format=json&class={Uri.EscapeDataString(other)}&top=5", Raw(SampleBytes(2)));
        var explanation = (await response.Content.ReadFromJsonAsync<ExplanationResponse>())!;

        Assert.Equal(other, explanation.Class);
        Assert.Equal(5, explanation.Top.Count);
    }

    [Fact]
    public async Task ExplainKeepsPredictsLimitsAndRefusals()
    {
        var png = SampleBytes();
        var huge = (byte[])png.Clone();
        BinaryPrimitives.WriteUInt32BigEndian(huge.AsSpan(16), 100_000);
        BinaryPrimitives.WriteUInt32BigEndian(huge.AsSpan(20), 100_000);

        // The server answers 413 from the declared length without reading the body; with Expect: 100-continue (as curl
        // sends for large bodies) the client waits for that answer instead of racing to send what will not be read.
        using var oversized = new HttpRequestMessage(HttpMethod.Post, "/explain") { Content = Raw(new byte[ServerFixture.MaxBodyBytes + 1]) };
        oversized.Headers.ExpectContinue = true;
        using var tooLarge = await Client.SendAsync(oversized);
        await AssertErrorAsync(tooLarge, HttpStatusCode.RequestEntityTooLarge, "--max-body-bytes");
        using var tooManyPixels = await Client.PostAsync("/explain", Raw(huge));
        await AssertErrorAsync(tooManyPixels, HttpStatusCode.UnprocessableEntity, "100000x100000", "--max-pixels");
        using var notAnImage = await Client.PostAsync("/explain", Raw("<html/>"u8.ToArray()));
        await AssertErrorAsync(notAnImage, HttpStatusCode.UnsupportedMediaType, "not a PNG");
        using var empty = await Client.PostAsync("/explain", Raw([]));
        await AssertErrorAsync(empty, HttpStatusCode.BadRequest, "empty");
        using var truncated = await Client.PostAsync("/explain", Raw(png[..40]));
        await AssertErrorAsync(truncated, HttpStatusCode.BadRequest, "truncated");
        using var badFormat = await Client.PostAsync("/explain?format=gif", Raw(png));
        await AssertErrorAsync(badFormat, HttpStatusCode.BadRequest, "format=gif");
        using var badClass = await Client.PostAsync("/explain?class=Unicorn", Raw(png));
        await AssertErrorAsync(badClass, HttpStatusCode.BadRequest, "class=Unicorn");
        using var badTop = await Client.PostAsync("/explain?top=0", Raw(png));
        await AssertErrorAsync(badTop, HttpStatusCode.BadRequest, "top=0");
    }
}
