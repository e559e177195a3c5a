using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;

namespace MlNetFinetune.LoadTest;

/// <summary>What to send where: <see cref="Requests"/> predictions at each level of <see cref="Concurrency"/>.</summary>
/// <param name="WarmUpRequests">Sent one at a time before measuring: the server's first hundred or so predictions are
/// slower (tiered JIT recompiling the hot paths), and the first level should not pay for that.</param>
public sealed record HttpLoadOptions(Uri Url, string ImageFolder, IReadOnlyList<int> Concurrency, int Requests, int WarmUpRequests, int? ServerPid)
{

    public static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(60);

    public static HttpLoadOptions From(Arguments args)
    {
        var url = args.Required("--url");
        var options = new HttpLoadOptions(
            Uri.TryCreate(url, UriKind.Absolute, out var uri) ? uri : throw new UserInputException($"--url {url}: not an absolute URL"),
            args.Required("--images"),
            [.. (args.Optional("--concurrency") ?? "1,8,32").Split(',').Select(c => Arguments.ParseInt("--concurrency", c))],
            args.Int("--requests", 200),
            args.Int("--warm-up", 100),
            args.Optional("--server-pid") is { } pid ? Arguments.ParseInt("--server-pid", pid) : null);
        args.EnsureAllUsed();

        // A load test is an attack on whatever it points at; this one only ever points at this machine.
        if (!uri.IsLoopback)
        {
            throw new UserInputException($"--url {url}: only a loopback address (127.0.0.1, ::1, localhost) may be load-tested");
        }

        return options;
    }
}

/// <summary>Drives POST /predict with real images from several clients at once and prints throughput, latency and server memory.</summary>
public static class HttpLoad
{
    private static readonly MediaTypeHeaderValue s_octetStream = new("application/octet-stream");

    /// <summary>Returns 0 when every request got a prediction, 1 when any failed.</summary>
    public static async Task<int> RunAsync(HttpLoadOptions options, TextWriter output)
    {
        var images = Directory.Exists(options.ImageFolder)
            ? Directory.EnumerateFiles(options.ImageFolder, "*.png", SearchOption.AllDirectories).Order(StringComparer.Ordinal).Select(File.ReadAllBytes).ToArray()
            : [];
        if (images.Length == 0)
        {
            throw new UserInputException($"--images {options.ImageFolder}: no PNG files found");
        }

        var warmUp = await LevelAsync(options, images, concurrency: 1, options.WarmUpRequests);
        if (warmUp.Errors > 0)
        {
            throw new UserInputException($"--url {options.Url}: the server did not answer the warm-up requests ({warmUp.FirstError})");
        }

        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"POST {new Uri(options.Url, "/predict")}: {options.Requests} requests per level after {options.WarmUpRequests} untimed ones, {images.Length} distinct PNGs of {images.Average(i => i.Length):F0} bytes on average"));
        output.WriteLine("| clients | requests | req/s | p50 ms | p99 ms | max ms | errors | server CPU ms/request | server RSS before MB | server RSS after MB | server RSS peak MB |");
        output.WriteLine("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        var failed = false;
        foreach (var concurrency in options.Concurrency)
        {
            var before = Memory(options.ServerPid, "VmRSS");
            var cpuBefore = CpuSeconds(options.ServerPid);
            var level = await LevelAsync(options, images, concurrency, options.Requests);
            var cpu = CpuSeconds(options.ServerPid) - cpuBefore;
            var after = Memory(options.ServerPid, "VmRSS");
            var peak = Memory(options.ServerPid, "VmHWM");
            var latencies = new Latencies(level.Milliseconds);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {concurrency} | {options.Requests} | {options.Requests / level.Elapsed.TotalSeconds:F1} | {Latencies.Ms(latencies.Percentile(50))} | {Latencies.Ms(latencies.Percentile(99))} | {Latencies.Ms(latencies.Percentile(100))} | {level.Errors} | {(cpu is { } seconds ? Latencies.Ms(seconds * 1000 / options.Requests) : "-")} | {before} | {after} | {peak} |"));
            if (level.FirstError is { } error)
            {
                output.WriteLine($"first error at {concurrency} clients: {error}");
                failed = true;
            }
        }

        return failed ? 1 : 0;
    }

    private sealed record LevelResult(TimeSpan Elapsed, double[] Milliseconds, int Errors, string? FirstError);

    /// <summary><paramref name="concurrency"/> clients take requests from a shared count until <paramref name="requests"/> have been sent.</summary>
    private static async Task<LevelResult> LevelAsync(HttpLoadOptions options, byte[][] images, int concurrency, int requests)
    {
        using var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = concurrency })
        {
            BaseAddress = options.Url,
            Timeout = HttpLoadOptions.RequestTimeout,
        };
        var milliseconds = new double[requests];
        var next = -1;
        var errors = 0;
        string? firstError = null;
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < requests)
            {
                var start = Stopwatch.GetTimestamp();
                var error = await PredictAsync(client, images[i % images.Length]);
                milliseconds[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                if (error is not null)
                {
                    Interlocked.Increment(ref errors);
                    Interlocked.CompareExchange(ref firstError, error, null);
                }
            }
        }));
        return new LevelResult(clock.Elapsed, milliseconds, errors, firstError);
    }

    /// <summary>Sends one image; returns null when a prediction came back, else what went wrong.</summary>
    private static async Task<string?> PredictAsync(HttpClient client, byte[] image)
    {
        try
        {
            using var content = new ByteArrayContent(image) { Headers = { ContentType = s_octetStream } };
            using var response = await client.PostAsync("/predict", content);
            var body = await response.Content.ReadAsStringAsync();
            if (response.StatusCode != HttpStatusCode.OK)
            {
                return $"{(int)response.StatusCode} {body}";
            }

            using var json = JsonDocument.Parse(body);
            return json.RootElement.TryGetProperty("label", out _) ? null : $"200 without a label: {body}";
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException)
        {
            return $"{e.GetType().Name}: {e.Message}";
        }
    }

    /// <summary>
    /// CPU time the server has used, all threads, from /proc (utime + stime, in USER_HZ ticks, 100 a second on Linux).
    /// Unlike latency it hardly changes when other programs compete for the cores, so it is the steadier figure.
    /// </summary>
    private static double? CpuSeconds(int? pid)
    {
        if (pid is null)
        {
            return null;
        }

        // The command name in parentheses may hold spaces; the fields after it are fixed: utime and stime are the 12th and 13th.
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
    }

    /// <summary>A memory figure of the server process from /proc, in MB, or "-" without a pid.</summary>
    private static string Memory(int? pid, string field)
    {
        if (pid is null)
        {
            return "-";
        }

        var line = File.ReadLines($"/proc/{pid}/status").FirstOrDefault(l => l.StartsWith(field + ":", StringComparison.Ordinal))
            ?? throw new InvalidOperationException($"/proc/{pid}/status has no {field}");
        var kilobytes = long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
        return (kilobytes / 1024.0).ToString("F0", CultureInfo.InvariantCulture);
    }
}
