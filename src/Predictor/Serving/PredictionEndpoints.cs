using System.Globalization;
using Microsoft.AspNetCore.Http;
using Microsoft.Net.Http.Headers;
using MlNetFinetune.Evaluation;
using MlNetFinetune.Images;
using MlNetFinetune.Prediction;

namespace MlNetFinetune.Predictor.Serving;

/// <summary>A JSON error body: <c>{"error": "..."}</c>.</summary>
public sealed record ErrorResponse(string Error);

/// <summary>The request handlers. Every refusal is a 4xx with one line saying what was wrong and which limit applies.</summary>
public sealed class PredictionEndpoints(ImageClassifier classifier, ServeOptions options) : IDisposable
{
    public const int DefaultTop = 3;

    /// <summary>The form field a multipart upload should use; any other file field is taken when it is missing.</summary>
    public const string FileField = "file";

    // Requests beyond the classifier's engines wait here without holding a thread; ImageClassifier.Predict would block one.
    private readonly SemaphoreSlim _gate = new(classifier.MaxConcurrency, classifier.MaxConcurrency);

    public static IResult Error(int status, string message) => Results.Json(new ErrorResponse(message), statusCode: status);

    public IResult Model() => Results.Json(classifier.Manifest, ReportWriter.JsonOptions);

    public async Task<IResult> PredictAsync(HttpRequest request, CancellationToken aborted)
    {
        var top = DefaultTop;
        if (request.Query.TryGetValue("top", out var topText)
            && (!int.TryParse(topText, NumberStyles.None, CultureInfo.InvariantCulture, out top) || top < 1))
        {
            return Error(StatusCodes.Status400BadRequest, $"top={topText}: must be a whole number of at least 1");
        }

        if (request.ContentLength > options.MaxBodyBytes)
        {
            return TooLarge(request.ContentLength.Value);
        }

        byte[] image;
        string source;
        try
        {
            (image, source) = await ReadImageAsync(request, aborted);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return TooLarge(null);
        }
        catch (InvalidDataException e)
        {
            return Error(StatusCodes.Status400BadRequest, e.Message);
        }

        if (image.Length == 0)
        {
            return Error(StatusCodes.Status400BadRequest, $"{source}: empty; send the image bytes as the body or as a multipart/form-data field '{FileField}'");
        }

        if (ImageHeader.DetectFormat(image) is null)
        {
            return Error(StatusCodes.Status415UnsupportedMediaType,
                $"{source}: not a {ImageHeader.SupportedFormats} image (starts with {Convert.ToHexString(image, 0, Math.Min(8, image.Length))})");
        }

        ImageHeader header;
        try
        {
            header = ImageHeader.Read(image, source);
        }
        catch (InvalidImageException e)
        {
            return Error(StatusCodes.Status400BadRequest, e.Message);
        }

        if (header.Pixels > options.MaxPixels)
        {
            return Error(StatusCodes.Status422UnprocessableEntity, string.Create(CultureInfo.InvariantCulture,
                $"{source}: {header.Format} declares {header.Width}x{header.Height} = {header.Pixels} pixels, more than the limit of {options.MaxPixels} (--max-pixels)"));
        }

        await _gate.WaitAsync(aborted);
        try
        {
            return Results.Json(classifier.Predict(image, top, source));
        }
        catch (InvalidImageException e)
        {
            return Error(StatusCodes.Status400BadRequest, e.Message);
        }
        finally
        {
            _gate.Release();
        }
    }

    public void Dispose() => _gate.Dispose();

    private IResult TooLarge(long? length) => Error(StatusCodes.Status413PayloadTooLarge, string.Create(CultureInfo.InvariantCulture,
        $"request body {(length is { } bytes ? $"of {bytes} bytes " : "")}is larger than the limit of {options.MaxBodyBytes} bytes (--max-body-bytes)"));

    /// <summary>The raw body, or the file of a multipart/form-data body, with a name for error messages.</summary>
    private static async Task<(byte[] Image, string Source)> ReadImageAsync(HttpRequest request, CancellationToken aborted)
    {
        // Only multipart carries a file; any other type, form-urlencoded included (curl's default), is the image itself.
        if (MediaTypeHeaderValue.TryParse(request.ContentType, out var type) && type.MediaType.Equals("multipart/form-data", StringComparison.OrdinalIgnoreCase))
        {
            var form = await request.ReadFormAsync(aborted);
            var file = form.Files.GetFile(FileField) ?? form.Files.FirstOrDefault()
                ?? throw new InvalidDataException($"form has no file; send the image as a multipart/form-data field '{FileField}'");
            using var upload = new MemoryStream((int)file.Length);
            await file.CopyToAsync(upload, aborted);
            return (upload.ToArray(), $"uploaded file '{file.FileName}'");
        }

        using var body = new MemoryStream();
        await request.Body.CopyToAsync(body, aborted);
        return (body.ToArray(), "request body");
    }
}
