using System.Globalization;

namespace MlNetFinetune.Predictor.Serving;

/// <summary>How the prediction server runs.</summary>
/// <param name="ModelPath">model.zip written by the Trainer, loaded once at start-up.</param>
/// <param name="Urls">Kestrel addresses, separated by ';'. Loopback by default so nothing is exposed by accident; port 0 picks a free port.</param>
/// <param name="MaxBodyBytes">Largest request body accepted; larger ones get 413.</param>
/// <param name="MaxPixels">Largest width x height an image header may declare; larger ones get 422 before any decoding.</param>
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

    /// <summary>How long a stopping server lets requests in flight finish.</summary>
    public static readonly TimeSpan ShutdownTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Throws <see cref="UserInputException"/> naming the option when a limit is impossible.</summary>
    public void Validate()
    {
        foreach (var (name, value) in new[] { ("--max-body-bytes", MaxBodyBytes), ("--max-pixels", MaxPixels), ("--max-concurrency", MaxConcurrency ?? 1L) })
        {
            if (value < 1)
            {
                throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"{name} {value}: must be at least 1"));
            }
        }

        if (MaxBodyBytes > Array.MaxLength)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"--max-body-bytes {MaxBodyBytes}: at most {Array.MaxLength} (one request is held in memory)"));
        }

        if (string.IsNullOrWhiteSpace(Urls))
        {
            throw new UserInputException("--urls: give at least one address, e.g. http://127.0.0.1:5000");
        }
    }
}
