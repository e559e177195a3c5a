using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MlNetFinetune.Prediction;

namespace MlNetFinetune.Hosting;

/// <summary>
/// Registers an <see cref="ImageClassifier"/> with dependency injection, as ASP.NET Core apps use it:
/// <code>
/// builder.Services.AddImageClassifier(builder.Configuration.GetSection("ImageClassifier"));
/// app.MapPost("/predict", (HttpRequest request, ImageClassifier classifier, CancellationToken aborted) =>
///     classifier.PredictAsync(request.Body, top: 3, aborted));
/// </code>
/// </summary>
public static class ImageClassifierServiceCollectionExtensions
{
    /// <summary>
    /// Registers the classifier as a singleton, its <see cref="ImageClassifierOptions"/> bound from
    /// <paramref name="configuration"/> (e.g. the section <c>"ImageClassifier"</c>: <c>ModelPath</c>,
    /// <c>MaxConcurrency</c>, <c>GpuDevice</c>, <c>WatchForChanges</c>, <c>Limits:MaxPixels</c>, <c>Limits:MaxEncodedBytes</c>), loaded and warmed up
    /// when the host starts (a bad model file stops the start with one line naming it).
    /// </summary>
    public static IServiceCollection AddImageClassifier(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<ImageClassifierOptions>().Bind(configuration);
        return AddClassifier(services);
    }

    /// <summary>Registers the classifier as a singleton with the given options, loaded and warmed up when the host starts.</summary>
    public static IServiceCollection AddImageClassifier(this IServiceCollection services, ImageClassifierOptions options)
    {
        services.AddSingleton(Options.Create(options));
        return AddClassifier(services);
    }

    private static IServiceCollection AddClassifier(IServiceCollection services)
    {
        services.TryAddSingleton(provider =>
        {
            var classifier = ImageClassifier.Load(provider.GetRequiredService<IOptions<ImageClassifierOptions>>().Value);
            if (provider.GetService<ILoggerFactory>()?.CreateLogger<ImageClassifier>() is { } logger)
            {
                classifier.Reloaded += (_, reload) => LogReload(logger, reload);
            }

            return classifier;
        });
        services.AddHostedService<WarmUpOnStart>();
        return services;
    }

    private static void LogReload(ILogger logger, ModelReloadedEventArgs reload)
    {
        if (reload.Error is { } error)
        {
            logger.LogWarning("{ModelPath} changed but cannot be loaded; the previous model keeps serving: {Error}", reload.ModelPath, error.Message);
        }
        else
        {
            logger.LogInformation("{ModelPath} reloaded: {Classes} classes", reload.ModelPath, reload.Manifest!.Classes.Count);
        }
    }

    /// <summary>Loads the model when the host starts, so a bad file fails the start and the first request is not the slow one.</summary>
    private sealed class WarmUpOnStart(IServiceProvider provider) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken)
        {
            provider.GetRequiredService<ImageClassifier>().WarmUp();
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
