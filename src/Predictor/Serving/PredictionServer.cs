using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using MlNetFinetune.Hosting;
using MlNetFinetune.Images;
using MlNetFinetune.Prediction;

namespace MlNetFinetune.Predictor.Serving;

/// <summary>The HTTP front of <see cref="ImageClassifier"/>: a minimal API on Kestrel.</summary>
public static class PredictionServer
{
    /// <summary>
    /// Loads the model, then builds the server without starting it (starting warms the model up). Throws
    /// <see cref="UserInputException"/> naming the option or the file when either cannot be used, so a bad model fails
    /// at start-up rather than on the first request.
    /// </summary>
    public static WebApplication Build(ServeOptions options)
    {
        options.Validate();
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.WebHost.UseUrls(options.Urls);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = options.MaxBodyBytes;
            kestrel.Limits.MinRequestBodyDataRate = new MinDataRate(options.MinBodyBytesPerSecond, options.BodyRateGracePeriod);
        });
        builder.Services.Configure<FormOptions>(form => form.MultipartBodyLengthLimit = options.MaxBodyBytes);
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = ServeOptions.ShutdownTimeout);
        // Logs go to stderr so that stdout carries only the "serving ... at <address>" line a script may read. A failed
        // start is reported by Run as one line, so the host's own report of it (a stack trace) is dropped; so are
        // Kestrel's reports of bad requests, which the client already gets as a 4xx.
        builder.Services.Configure<ConsoleLoggerOptions>(console => console.LogToStandardErrorThreshold = LogLevel.Trace);
        builder.Logging
            .AddFilter("Microsoft.AspNetCore", LogLevel.Warning)
            .AddFilter("Microsoft.Hosting.Lifetime", LogLevel.Warning)
            .AddFilter("Microsoft.Extensions.Hosting", LogLevel.None);

        builder.Services.AddImageClassifier(new ImageClassifierOptions
        {
            ModelPath = options.ModelPath,
            MaxConcurrency = options.MaxConcurrency,
            Limits = new ImageLimits(MaxPixels: options.MaxPixels, MaxEncodedBytes: options.MaxBodyBytes),
        });
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(new BodyBudget(options.MaxInFlightBytes));
        builder.Services.AddSingleton<RequestOriginPolicy>();
        builder.Services.AddSingleton<PredictionEndpoints>();

        var app = builder.Build();
        PredictionEndpoints endpoints;
        try
        {
            endpoints = app.Services.GetRequiredService<PredictionEndpoints>();
        }
        catch
        {
            ((IDisposable)app).Dispose();
            throw;
        }

        app.UseExceptionHandler(new ExceptionHandlerOptions
        {
            ExceptionHandler = context => PredictionEndpoints.Error(StatusCodes.Status500InternalServerError, "internal error; see the server log").ExecuteAsync(context),
        });
        var policy = app.Services.GetRequiredService<RequestOriginPolicy>();
        app.Use(async (context, next) =>
        {
            if (policy.Check(context.Request) is { } refusal)
            {
                await refusal.ExecuteAsync(context);
                return;
            }

            if (!policy.AllowCors(context))
            {
                await next(context);
            }
        });
        app.MapPost("/predict", endpoints.PredictAsync);
        app.MapGet("/health", () => Results.Json(new { status = "ok" }));
        app.MapGet("/model", endpoints.Model);
        app.MapPost("/explain", endpoints.ExplainAsync);
        app.MapFallback(() => PredictionEndpoints.Error(StatusCodes.Status404NotFound, "no such endpoint; use POST /predict, POST /explain, GET /health or GET /model"));
        return app;
    }

    /// <summary>
    /// Serves until Ctrl+C or SIGTERM, then lets requests in flight finish (up to <see cref="ServeOptions.ShutdownTimeout"/>).
    /// Writes the addresses it listens on to <paramref name="output"/> once it accepts requests.
    /// </summary>
    public static void Run(ServeOptions options, TextWriter output)
    {
        using var app = Build(options);
        try
        {
            app.Start();
        }
        catch (Exception e) when (e is IOException or SocketException or FormatException)
        {
            throw new UserInputException($"--urls {options.Urls}: cannot listen ({e.GetBaseException().Message})");
        }

        var classifier = app.Services.GetRequiredService<ImageClassifier>();
        output.WriteLine($"serving {options.ModelPath} ({classifier.Classes.Count} classes, {classifier.MaxConcurrency} at a time) at {string.Join(' ', app.Urls)}; Ctrl+C stops");
        app.WaitForShutdown();
    }
}
