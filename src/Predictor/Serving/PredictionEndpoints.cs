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
public sealed class PredictionEndpoints(ImageClassifier classifier, ServeOptions options, BodyBudget budget)
{
    public const int DefaultTop = 3;

    /// <summary>The form field a multipart upload should use; any other file field is taken when it is missing.</summary>
    public const string FileField = "file";

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

        // Admitted only when the body fits the in-flight budget; a chunked body reserves the most it may be.
        using var reservation = await budget.ReserveAsync(request.ContentLength ?? options.MaxBodyBytes, aborted);
        byte[] image;
        string source;
        try
        {
            (image, source) = await ReadImageAsync(request, aborted);
        }
        catch (BadHttpRequestException e)
        {
            // 413 past --max-body-bytes, 408 for a body arriving too slowly, 400 for a body cut short.
            return e.StatusCode == StatusCodes.Status413PayloadTooLarge
                ? TooLarge(null)
                : Error(e.StatusCode, $"request body: {FirstLine(e.Message)}");
        }
        catch (InvalidDataException e)
        {
            return Error(StatusCodes.Status400BadRequest, $"request body: {FirstLine(e.Message)}");
        }

        reservation.ShrinkTo(image.Length);
        if (image.Length == 0)
        {
            return Error(StatusCodes.Status400BadRequest, $"{source}: empty; send the image bytes as the body or as a multipart/form-data field '{FileField}'");
        }

        if (ImageHeader.DetectFormat(image) is null)
        {
            return Error(StatusCodes.Status415UnsupportedMediaType,
                $"{source}: not a {ImageHeader.SupportedFormats} image (starts with {Convert.ToHexString(image, 0, Math.Min(8, image.Length))})");
        }

        // The decoder refuses a bomb from the real frame sizes before it allocates pixels (--max-pixels).
        try
        {
            return Results.Json(await classifier.PredictAsync(image, source, top, aborted));
        }
        catch (InvalidImageException e)
        {
            return e.Problem switch
            {
                ImageProblem.TooLarge => Error(StatusCodes.Status422UnprocessableEntity, $"{e.Message} (--max-pixels)"),
                ImageProblem.UnknownFormat => Error(StatusCodes.Status415UnsupportedMediaType, e.Message),
                _ => Error(StatusCodes.Status400BadRequest, e.Message),
            };
        }
    }

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
            var upload = new byte[file.Length];
            await using var stream = file.OpenReadStream();
            await stream.ReadExactlyAsync(upload, aborted);
            return (upload, $"uploaded file '{file.FileName}'");
        }

        if (request.ContentLength is long length)
        {
            var body = new byte[length];
            await request.Body.ReadExactlyAsync(body, aborted);
            return (body, "request body");
        }

        using var chunked = new MemoryStream();
        await request.Body.CopyToAsync(chunked, aborted);
        return (chunked.ToArray(), "request body");
    }

    private static string FirstLine(string text) => text.Split('\n', 2)[0].Trim();
}
