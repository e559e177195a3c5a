using System.Text.Json.Serialization;

namespace MlNetFinetune.Images;

/// <summary>
/// What a transparent or half-transparent pixel becomes. The backbone sees colour only, so every policy gives an
/// opaque image; they differ only where the source has alpha below 255.
/// </summary>
[JsonConverter(typeof(JsonStringEnumConverter<AlphaPolicy>))]
public enum AlphaPolicy
{
    /// <summary>
    /// Blend onto black: colour x alpha. This is what <c>MLImage.CreateFromStream</c> followed by ML.NET's resize and
    /// pixel extraction gave (SkiaSharp decodes to premultiplied colour), so models trained before keep their inputs.
    /// </summary>
    CompositeOnBlack,

    /// <summary>Blend onto white: colour x alpha + 255 x (1 - alpha), how a browser shows the image on a white page.</summary>
    CompositeOnWhite,

    /// <summary>The colour stored under each pixel, whatever its alpha (invisible pixels keep whatever colour the file holds).</summary>
    KeepColor,
}
