using System.Globalization;
using Microsoft.AspNetCore.Http;
using Microsoft.Net.Http.Headers;
using MlNetFinetune.Explanations;
using MlNetFinetune.Prediction;

namespace MlNetFinetune.Predictor.Serving;

/// <summary>The grid of an explanation as JSON: which method, its settings, the prediction, and one class's heat per cell.</summary>
/// <param name="Method">"occlusion".</param>
/// <param name="Class">The class whose heat <paramref name="Cells"/> holds (the predicted one unless asked).</param>
/// <param name="Cells">Grid rows, top first: how much hiding each cell lowers p(<paramref name="Class"/>).</param>
public sealed record ExplanationResponse(
    string Method, int Grid, int PatchCells, string Fill, string Label, float Confidence, IReadOnlyList<LabelScore> Top, string Class, float[][] Cells);

/// <summary>
/// <c>POST /explain[?format=png|json][&amp;top=k][&amp;class=name]</c>: the image as for <c>/predict</c>, answered with a
/// PNG (the image, where the model looked for the predicted class, the top classes) or the heat grid as JSON. The
/// same limits as <c>/predict</c>: the body limit (Kestrel's and the form's, and the declared length), the media
/// types, the pixel limit read from the header before decoding, and the classifier's concurrency limit, which
/// explanations share with predictions.
/// </summary>
public sealed class ExplainEndpoint(ImageClassifier classifier, ServeOptions options)
{
    // Requests beyond the classifier's limit wait here without holding a thread, as /predict's do. Only waits are
    // used, never its wait handle, so the semaphore holds nothing that needs disposing.
    private readonly SemaphoreSlim _gate = new(classifier.MaxConcurrency, classifier.MaxConcurrency);

    public async Task<IResult> ExplainAsync(HttpRequest request, CancellationToken aborted)
    {
        var format = request.Query.TryGetValue("format", out var formatText) ? formatText.ToString() : "png";
        if (format is not ("png" or "json"))
        {
            return PredictionEndpoints.Error(StatusCodes.Status400BadRequest, $"format={format}: use png or json");
        }

        var top = PredictionEndpoints.DefaultTop;
        if (request.Query.TryGetValue("top", out var topText)
            && (!int.TryParse(topText, NumberStyles.None, CultureInfo.InvariantCulture, out top) || top < 1))
        {
            return PredictionEndpoints.Error(StatusCodes.Status400BadRequest, $"top={topText}: must be a whole number of at least 1");
        }

        string? explainedClass = request.Query.TryGetValue("class", out var classText) ? classText.ToString() : null;
        if (explainedClass is not null && !classifier.Classes.Contains(explainedClass, StringComparer.Ordinal))
        {
            return PredictionEndpoints.Error(StatusCodes.Status400BadRequest, $"class={explainedClass}: not one of the model's classes (GET /model lists them)");
        }

        var (image, source, refusal) = await ImageRequest.ReadAsync(request, options, aborted);
        if (refusal is not null)
        {
            return refusal;
        }

        await _gate.WaitAsync(aborted);
        try
        {
            var explanation = classifier.Explain(image, source, top);
            var map = explanation.Map;
            var label = explainedClass ?? explanation.Label;
            if (format == "png")
            {
                return Results.File(ExplanationPicture.Png(image, explanation, source, label), "image/png");
            }

            return Results.Json(new ExplanationResponse(
                OcclusionMap.Method, map.Grid, map.Options.PatchCells, map.Options.Fill.ToString(), explanation.Label, explanation.Confidence, explanation.Top,
                label, map.Rows(map.IndexOf(label))));
        }
        catch (InvalidDataException e)
        {
            return PredictionEndpoints.Error(StatusCodes.Status400BadRequest, e.Message);
        }
        finally
        {
            _gate.Release();
        }
    }
}

/// <summary>
/// Reads an image from a request and applies the server's limits in <c>/predict</c>'s order, with its status codes
/// and messages: 413 over the body limit, 400 empty, 415 not a supported format, 400 unreadable header, 422 over the
/// pixel limit. (PredictionEndpoints does the same inline; once both branches are merged it can call this.)
/// </summary>
public static class ImageRequest
{
    /// <summary>The image bytes and a name for messages, or the refusal to answer with.</summary>
    public static async Task<(byte[] Image, string Source, IResult? Refusal)> ReadAsync(HttpRequest request, ServeOptions options, CancellationToken aborted)
    {
        if (request.ContentLength > options.MaxBodyBytes)
        {
            return ([], "", TooLarge(options, request.ContentLength.Value));
        }

        byte[] image;
        string source;
        try
        {
            (image, source) = await ReadBodyAsync(request, aborted);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return ([], "", TooLarge(options, null));
        }
        catch (InvalidDataException e)
        {
            return ([], "", PredictionEndpoints.Error(StatusCodes.Status400BadRequest, e.Message));
        }

        if (image.Length == 0)
        {
            return (image, source, PredictionEndpoints.Error(StatusCodes.Status400BadRequest,
                $"{source}: empty; send the image bytes as the body or as a multipart/form-data field '{PredictionEndpoints.FileField}'"));
        }

        if (ImageHeader.DetectFormat(image) is null)
        {
            return (image, source, PredictionEndpoints.Error(StatusCodes.Status415UnsupportedMediaType,
                $"{source}: not a {ImageHeader.SupportedFormats} image (starts with {Convert.ToHexString(image, 0, Math.Min(8, image.Length))})"));
        }

        ImageHeader header;
        try
        {
            header = ImageHeader.Read(image, source);
        }
        catch (InvalidDataException e)
        {
            return (image, source, PredictionEndpoints.Error(StatusCodes.Status400BadRequest, e.Message));
        }

        if (header.Pixels > options.MaxPixels)
        {
            return (image, source, PredictionEndpoints.Error(StatusCodes.Status422UnprocessableEntity, string.Create(CultureInfo.InvariantCulture,
                $"{source}: {header.Format} declares {header.Width}x{header.Height} = {header.Pixels} pixels, more than the limit of {options.MaxPixels} (--max-pixels)")));
        }

        return (image, source, null);
    }

    private static IResult TooLarge(ServeOptions options, long? length) => PredictionEndpoints.Error(StatusCodes.Status413PayloadTooLarge, string.Create(CultureInfo.InvariantCulture,
        $"request body {(length is { } bytes ? $"of {bytes} bytes " : "")}is larger than the limit of {options.MaxBodyBytes} bytes (--max-body-bytes)"));

    private static async Task<(byte[] Image, string Source)> ReadBodyAsync(HttpRequest request, CancellationToken aborted)
    {
        // Only multipart carries a file; any other type, form-urlencoded included (curl's default), is the image itself.
        if (MediaTypeHeaderValue.TryParse(request.ContentType, out var type) && type.MediaType.Equals("multipart/form-data", StringComparison.OrdinalIgnoreCase))
        {
            var form = await request.ReadFormAsync(aborted);
            var file = form.Files.GetFile(PredictionEndpoints.FileField) ?? form.Files.FirstOrDefault()
                ?? throw new InvalidDataException($"form has no file; send the image as a multipart/form-data field '{PredictionEndpoints.FileField}'");
            using var upload = new MemoryStream((int)file.Length);
            await file.CopyToAsync(upload, aborted);
            return (upload.ToArray(), $"uploaded file '{file.FileName}'");
        }

        using var body = new MemoryStream();
        await request.Body.CopyToAsync(body, aborted);
        return (body.ToArray(), "request body");
    }
}
