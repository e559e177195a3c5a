using System.Globalization;
using Microsoft.AspNetCore.Http;
using Microsoft.Net.Http.Headers;
using MlNetFinetune.Evaluation;
using MlNetFinetune.Explanations;
using MlNetFinetune.Images;
using MlNetFinetune.Prediction;

namespace MlNetFinetune.Predictor.Serving;

/// <summary>A JSON error body: <c>{"error": "..."}</c>.</summary>
public sealed record ErrorResponse(string Error);

/// <summary>The grid of an explanation as JSON: which method, its settings, the prediction, and one class's heat per cell.</summary>
/// <param name="Method">"occlusion".</param>
/// <param name="Class">The class whose heat <paramref name="Cells"/> holds (the predicted one unless asked).</param>
/// <param name="Cells">Grid rows, top first: how much hiding each cell lowers p(<paramref name="Class"/>).</param>
public sealed record ExplanationResponse(
    string Method, int Grid, int PatchCells, string Fill, string Label, float Confidence, IReadOnlyList<LabelScore> Top, string Class, float[][] Cells);

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
        if (ReadTop(request, out var top) is { } refusal)
        {
            return refusal;
        }

        return await ReceiveImageAsync(request, async (image, source) => Results.Json(await classifier.PredictAsync(image, source, top, aborted)), aborted);
    }

    /// <summary>
    /// <c>POST /explain[?format=png|json][&amp;top=k][&amp;class=name]</c>: the image as for <c>/predict</c>, under its
    /// limits and refusals, answered with a PNG (the image, where the model looked for the predicted class, the top
    /// classes) or the heat grid as JSON. Explanations share the classifier's concurrency limit with predictions.
    /// </summary>
    public async Task<IResult> ExplainAsync(HttpRequest request, CancellationToken aborted)
    {
        var format = request.Query.TryGetValue("format", out var formatText) ? formatText.ToString() : "png";
        if (format is not ("png" or "json"))
        {
            return Error(StatusCodes.Status400BadRequest, $"format={format}: use png or json");
        }

        if (ReadTop(request, out var top) is { } refusal)
        {
            return refusal;
        }

        var explainedClass = request.Query.TryGetValue("class", out var classText) ? classText.ToString() : null;
        if (explainedClass is not null && !classifier.Classes.Contains(explainedClass, StringComparer.Ordinal))
        {
            return Error(StatusCodes.Status400BadRequest, $"class={explainedClass}: not one of the model's classes (GET /model lists them)");
        }

        return await ReceiveImageAsync(request, async (image, source) =>
        {
            var explanation = await classifier.ExplainAsync(image, source, top, aborted);
            var map = explanation.Map;
            var label = explainedClass ?? explanation.Label;
            return format == "png"
                ? Results.File(ExplanationPicture.Png(image, explanation, source, label), "image/png")
                : Results.Json(new ExplanationResponse(
                    OcclusionMap.Method, map.Grid, map.Options.PatchCells, map.Options.Fill.ToString(), explanation.Label, explanation.Confidence, explanation.Top,
                    label, map.Rows(map.IndexOf(label))));
        }, aborted);
    }

    private static IResult? ReadTop(HttpRequest request, out int top)
    {
        top = DefaultTop;
        return request.Query.TryGetValue("top", out var topText)
            && (!int.TryParse(topText, NumberStyles.None, CultureInfo.InvariantCulture, out top) || top < 1)
            ? Error(StatusCodes.Status400BadRequest, $"top={topText}: must be a whole number of at least 1")
            : null;
    }

    /// <summary>
    /// Reads the image under the body limits and the in-flight budget (held until <paramref name="use"/> is done),
    /// refuses what is empty or not an image, and maps the decoder's refusals to their status codes.
    /// </summary>
    private async Task<IResult> ReceiveImageAsync(HttpRequest request, Func<byte[], string, Task<IResult>> use, CancellationToken aborted)
    {
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
            return await use(image, source);
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
