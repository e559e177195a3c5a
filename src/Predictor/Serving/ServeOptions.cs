using System.Globalization;

namespace MlNetFinetune.Predictor.Serving;

/// <summary>How the prediction server runs.</summary>
/// <param name="ModelPath">model.zip written by the Trainer, loaded once at start-up.</param>
/// <param name="Urls">Kestrel addresses (http only), separated by ';'. Loopback by default so nothing is exposed by accident; port 0 picks a free port.</param>
/// <param name="MaxBodyBytes">Largest request body accepted; larger ones get 413.</param>
/// <param name="MaxPixels">Largest width x height an image may declare; larger ones get 422 before any decoding.</param>
/// <param name="MaxConcurrency">Predictions run at once (engines in the classifier's pool); null for the classifier's default.</param>
public sealed record ServeOptions(
    string ModelPath,
    string Urls = ServeOptions.DefaultUrls,
    long MaxBodyBytes = ServeOptions.DefaultMaxBodyBytes,
    long MaxPixels = ServeOptions.DefaultMaxPixels,
    int? MaxConcurrency = null)
{
    public const string DefaultUrls = "http://127.0.0.1:5000";

    public const long DefaultMaxBodyBytes = 10 * 1024 * 1024;

    /// <summary>40 megapixels: above any camera photo worth classifying at 224x224, and about 160 MB once decoded.</summary>
    public const long DefaultMaxPixels = 40_000_000;

    /// <summary>
    /// 64 MiB of request bodies held at once by default: six or more full-size uploads in flight while the model
    /// (one prediction at a time per engine) works through them; more wait, unread, instead of piling up in memory.
    /// </summary>
    public const long DefaultMaxInFlightBytes = 64L * 1024 * 1024;

    /// <summary>How long a stopping server lets requests in flight finish.</summary>
    public static readonly TimeSpan ShutdownTimeout = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Request bodies held in memory at once, across all requests: a request is admitted to read its body only when its
    /// Content-Length (or, sent chunked, <see cref="MaxBodyBytes"/>) fits; the others wait, unread.
    /// </summary>
    public long MaxInFlightBytes { get; init; } = DefaultMaxInFlightBytes;

    /// <summary>
    /// Host names accepted in the Host header besides localhost and IP addresses ("*": any). A name that is not the
    /// server's own means a page whose domain was pointed at this address (DNS rebinding), so it is refused.
    /// </summary>
    public IReadOnlyList<string> AllowedHosts { get; init; } = [];

    /// <summary>
    /// Web origins (scheme://host[:port]) whose pages may call the server ("*": any). A browser request from any other
    /// origin is refused: a page could otherwise POST to a server on the user's loopback address.
    /// </summary>
    public IReadOnlyList<string> AllowedOrigins { get; init; } = [];

    /// <summary>Slowest request body accepted once its grace period is over; slower ones get 408. Kestrel's default.</summary>
    public double MinBodyBytesPerSecond { get; init; } = 240;

    /// <summary>How long a request body may arrive slower than <see cref="MinBodyBytesPerSecond"/>. Kestrel's default.</summary>
    public TimeSpan BodyRateGracePeriod { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Throws <see cref="UserInputException"/> naming the option when a value cannot work, before the model is loaded.</summary>
    public void Validate()
    {
        foreach (var (name, value) in new[] { ("--max-body-bytes", MaxBodyBytes), ("--max-pixels", MaxPixels), ("--max-concurrency", MaxConcurrency ?? 1L), ("--max-inflight-bytes", MaxInFlightBytes) })
        {
            if (value < 1)
            {
                throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"{name} {value}: must be at least 1"));
            }
        }

        if (MaxPixels > Images.ImageLimits.LargestMaxPixels)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"--max-pixels {MaxPixels}: at most {Images.ImageLimits.LargestMaxPixels} (4 bytes per pixel in one buffer)"));
        }

        if (MaxBodyBytes > Array.MaxLength)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"--max-body-bytes {MaxBodyBytes}: at most {Array.MaxLength} (one request is held in memory)"));
        }

        if (MaxInFlightBytes < MaxBodyBytes)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture,
                $"--max-inflight-bytes {MaxInFlightBytes}: must be at least --max-body-bytes ({MaxBodyBytes}), or a largest body could never be read"));
        }

        // Kestrel checks the rate once a second, so it takes only grace periods longer than that.
        if (!(MinBodyBytesPerSecond > 0) || BodyRateGracePeriod <= TimeSpan.FromSeconds(1))
        {
            throw new UserInputException("request body rate: give a rate above 0 and a grace period of more than 1 s");
        }

        if (string.IsNullOrWhiteSpace(Urls))
        {
            throw new UserInputException("--urls: give at least one address, e.g. http://127.0.0.1:5000");
        }

        foreach (var url in Urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            // Kestrel takes "http://*:5000" and "http://+:5000", which are not URIs, so only the scheme is checked here.
            var scheme = url.Split("://", 2) is [var s, _] ? s : null;
            if (!string.Equals(scheme, "http", StringComparison.OrdinalIgnoreCase))
            {
                throw new UserInputException(string.Equals(scheme, "https", StringComparison.OrdinalIgnoreCase)
                    ? $"--urls {url}: HTTPS is not served; listen on http:// and put a TLS-terminating proxy in front"
                    : $"--urls {url}: not an http:// address (e.g. http://127.0.0.1:5000)");
            }
        }

        foreach (var origin in AllowedOrigins.Where(o => o != "*"))
        {
            if (!Uri.TryCreate(origin, UriKind.Absolute, out var uri) || uri.AbsolutePath != "/" || uri.Scheme is not ("http" or "https"))
            {
                throw new UserInputException($"--allowed-origins {origin}: an origin is scheme://host[:port], e.g. https://app.example.com");
            }
        }
    }
}
