using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using MlNetFinetune.Prediction;
using MlNetFinetune.Predictor.Serving;

namespace MlNetFinetune.Tests;

[Collection(SampleModelCollection.Name)]
public sealed class PredictionServerLifetimeTests(SampleModelFixture fixture)
{
    private string TruncatedModel()
    {
        var path = Path.Combine(Directory.CreateDirectory(Path.Combine(fixture.Root, "serve-" + Guid.NewGuid().ToString("N")[..8])).FullName, "model.zip");
        File.WriteAllBytes(path, File.ReadAllBytes(fixture.Result.ModelPath)[..(1 << 20)]);
        return path;
    }

    private static void AssertOneErrorLine(CommandLineRunner.Outcome outcome, params string[] messageParts)
    {
        Assert.Equal(2, outcome.ExitCode);
        var line = Assert.Single(outcome.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("error:", line);
        Assert.All(messageParts, part => Assert.Contains(part, line));
    }

    [Fact]
    public void CorruptModelStopsTheServerAtStartUpWithOneLine()
    {
        var truncated = TruncatedModel();

        var error = Assert.Throws<UserInputException>(() => PredictionServer.Build(new ServeOptions(truncated, RunningServer.LoopbackAnyPort)));
        Assert.Contains(truncated, error.Message);

        AssertOneErrorLine(CommandLineRunner.Predictor("serve", "--model", truncated, "--urls", RunningServer.LoopbackAnyPort), truncated, "truncated or corrupted");
    }

    [Fact]
    public void ImpossibleLimitsAreRefusedBeforeLoading()
    {
        AssertOneErrorLine(CommandLineRunner.Predictor("serve", "--model", fixture.Result.ModelPath, "--max-body-bytes", "0"), "--max-body-bytes 0");
        AssertOneErrorLine(CommandLineRunner.Predictor("serve", "--model", fixture.Result.ModelPath, "--max-pixels", "-5"), "--max-pixels -5");
    }

    [Fact]
    public void PortInUseIsOneLine()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var url = $"http://127.0.0.1:{((IPEndPoint)taken.LocalEndpoint).Port}";

        AssertOneErrorLine(CommandLineRunner.Predictor("serve", "--model", fixture.Result.ModelPath, "--urls", url, "--max-concurrency", "1"), url, "cannot listen");
    }

    [Fact]
    public async Task StoppingLetsARequestInFlightFinish()
    {
        await using var server = await RunningServer.StartAsync(new ServeOptions(fixture.Result.ModelPath, RunningServer.LoopbackAnyPort, MaxConcurrency: 1));
        var file = fixture.Result.HeldOutPredictions[0].Path;
        var release = new TaskCompletionSource();
        var content = new HalfThenRestContent(File.ReadAllBytes(file), release.Task);

        var request = server.Client.PostAsync("/predict", content);
        await content.HalfSent.WaitAsync(TimeSpan.FromSeconds(30));
        await Task.Delay(300);
        var stopping = server.App.StopAsync();
        await Task.Delay(300);
        Assert.False(stopping.IsCompleted, "the server stopped while a request was still coming in");
        release.SetResult();

        using var response = await request;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var classifier = ImageClassifier.Load(fixture.Result.ModelPath);
        Assert.Equal(classifier.Predict(file).Label, (await response.Content.ReadFromJsonAsync<ClassificationResult>())!.Label);
        await stopping.WaitAsync(TimeSpan.FromSeconds(30));
    }
}
