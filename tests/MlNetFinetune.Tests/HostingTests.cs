using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using MlNetFinetune.Hosting;
using MlNetFinetune.Images;
using MlNetFinetune.Prediction;
using MlNetFinetune.Training;

namespace MlNetFinetune.Tests;

/// <summary>The library in an ASP.NET Core app as a user would write it, and reloading a replaced model file.</summary>
[Collection(SampleModelCollection.Name)]
public sealed class HostingTests(SampleModelFixture fixture)
{
    private static readonly Lock s_training = new();
    private static string? s_twoClassModel;

    /// <summary>A second, different real model (two classes), trained once per test run.</summary>
    private string TwoClassModel()
    {
        lock (s_training)
        {
            if (s_twoClassModel is null)
            {
                var data = TestData.CopySubset(Directory.CreateDirectory(Path.Combine(fixture.Root, "two-class")).FullName, 12, "Bag", "Sandal");
                var options = new TrainingOptions(data, OutputFolder: Path.Combine(data, "..", "two-class-model"), Workspace: fixture.Workspace) { ImageSize = 64, Features = "s4" };
                s_twoClassModel = new ImageClassifierTrainer(options).Train().ModelPath;
            }

            return s_twoClassModel;
        }
    }

    /// <summary>A copy of the sample model in a folder of its own, so that replacing it touches no other test's file.</summary>
    private string ModelCopy()
    {
        var folder = Directory.CreateDirectory(Path.Combine(fixture.Root, "hosting-" + Guid.NewGuid().ToString("N")[..8])).FullName;
        var path = Path.Combine(folder, "model.zip");
        File.Copy(fixture.Result.ModelPath, path);
        return path;
    }

    /// <summary>Replaces <paramref name="target"/> the way the Trainer writes a model: a temporary file renamed over it.</summary>
    private static void Replace(string target, string source)
    {
        var temporary = target + ".new";
        File.Copy(source, temporary);
        File.Move(temporary, target, overwrite: true);
    }

    [Fact]
    public async Task AMinimalApiAppClassifiesTheRequestBodyAndFollowsAReplacedModel()
    {
        // Given an app configured from appsettings-like configuration, listening on loopback
        var modelPath = ModelCopy();
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ImageClassifier:ModelPath"] = modelPath,
            ["ImageClassifier:MaxConcurrency"] = "2",
            ["ImageClassifier:WatchForChanges"] = "true",
        }).Build();
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls(RunningServer.LoopbackAnyPort);
        builder.Services.AddImageClassifier(configuration.GetSection(ImageClassifierOptions.SectionName));
        await using var app = builder.Build();
        app.MapPost("/predict", async (HttpRequest request, ImageClassifier classifier, CancellationToken aborted) =>
        {
            try
            {
                return Results.Json(await classifier.PredictAsync(request.Body, top: 3, aborted));
            }
            catch (InvalidImageException e)
            {
                return Results.BadRequest(new { error = e.Message });
            }
        });
        await app.StartAsync();
        using var client = new HttpClient { BaseAddress = new Uri(Assert.Single(app.Urls)) };
        var served = app.Services.GetRequiredService<ImageClassifier>();
        var file = fixture.Result.HeldOutPredictions[0].Path;
        using var reference = ImageClassifier.Load(fixture.Result.ModelPath);

        // When the body is an image, then not an image
        using var good = await client.PostAsync("/predict", new ByteArrayContent(File.ReadAllBytes(file)) { Headers = { ContentType = new MediaTypeHeaderValue("image/png") } });
        using var bad = await client.PostAsync("/predict", new StringContent("not an image"));

        // Then the app answers as the library does, and a bad image is the app's 400
        Assert.Equal(HttpStatusCode.OK, good.StatusCode);
        Assert.Equal(reference.Predict(file).Top, (await good.Content.ReadFromJsonAsync<ClassificationResult>())!.Top);
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Equal(2, served.MaxConcurrency);

        // When the model file is replaced by a two-class model
        var reloaded = new TaskCompletionSource<ModelReloadedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        served.Reloaded += (_, e) => reloaded.TrySetResult(e);
        Replace(modelPath, TwoClassModel());
        var reload = await reloaded.Task.WaitAsync(TimeSpan.FromSeconds(60));

        // Then the same singleton serves the new model
        Assert.Null(reload.Error);
        Assert.Equal(new[] { "Bag", "Sandal" }, served.Classes);
        using var after = await client.PostAsync("/predict", new ByteArrayContent(File.ReadAllBytes(file)));
        var result = (await after.Content.ReadFromJsonAsync<ClassificationResult>())!;
        Assert.Contains(result.Label, new[] { "Bag", "Sandal" });
        Assert.Equal(2, result.Top.Count);
    }

    [Fact]
    public void ABrokenReplacementKeepsTheOldModelServing()
    {
        var modelPath = ModelCopy();
        using var classifier = ImageClassifier.Load(new ImageClassifierOptions { ModelPath = modelPath });
        File.WriteAllBytes(modelPath, File.ReadAllBytes(modelPath)[..4096]);

        var error = Assert.Throws<UserInputException>(classifier.Reload);

        Assert.Contains(modelPath, error.Message);
        Assert.Equal(fixture.Result.Report.ClassNames, classifier.Classes);
        Assert.NotNull(classifier.Predict(fixture.Result.HeldOutPredictions[0].Path));
    }

    [Fact]
    public async Task PredictionsRunningDuringReloadsFinishOnTheModelTheyStartedWith()
    {
        // Given two real models with different classes, and predictions running on four threads
        var modelPath = ModelCopy();
        var twoClass = TwoClassModel();
        using var classifier = ImageClassifier.Load(modelPath, maxConcurrency: 2);
        var files = fixture.Result.HeldOutPredictions.Select(p => p.Path).Take(10).ToArray();
        var results = new System.Collections.Concurrent.ConcurrentBag<ClassificationResult>();
        using var stop = new CancellationTokenSource();
        var predicting = Task.WhenAll(Enumerable.Range(0, 4).Select(worker => Task.Run(async () =>
        {
            for (var i = 0; i < 400 && !stop.IsCancellationRequested; i++)
            {
                results.Add(await classifier.PredictAsync(files[(i + worker) % files.Length], top: 10));
            }
        })));

        // When the file is reloaded, alternately as each model, while they run
        for (var reload = 0; reload < 4; reload++)
        {
            File.Copy(reload % 2 == 0 ? twoClass : fixture.Result.ModelPath, modelPath, overwrite: true);
            classifier.Reload();
        }

        await stop.CancelAsync();
        await predicting.WaitAsync(TimeSpan.FromSeconds(120));

        // Then no prediction failed, and each carries one model's whole set of classes
        Assert.NotEmpty(results);
        Assert.All(results, r => Assert.True(r.Top.Count is 2 or 10, $"{r.Top.Count} classes"));
        Assert.All(results.Where(r => r.Top.Count == 2), r => Assert.Equal(new[] { "Bag", "Sandal" }, r.Top.Select(s => s.Label).Order(StringComparer.Ordinal)));
    }
}
