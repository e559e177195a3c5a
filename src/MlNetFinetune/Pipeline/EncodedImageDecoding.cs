using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms;
using MlNetFinetune.Images;

namespace MlNetFinetune.Pipeline;

/// <summary>A row holding one encoded image, as the decoding step reads it.</summary>
internal sealed class EncodedImageRow
{
    /// <summary>The encoded bytes (PNG, JPEG, BMP, GIF, WebP).</summary>
    [ColumnName(ChainLayout.SourceColumn)]
    public byte[] Bytes { get; set; } = [];
}

/// <summary>A row holding one decoded image, as the decoding step writes it.</summary>
internal sealed class DecodedImageRow
{
    /// <summary>The decoded image.</summary>
    [ColumnName(ChainLayout.ResizedImageColumn)]
    [AnySizeImageType]
    public MLImage? Image { get; set; }
}

/// <summary>
/// The chain's "load image" step for encoded bytes, by <see cref="ImageDecoder"/>. ML.NET has no transform from bytes
/// to an image, and user code cannot make an ML.NET-loadable transform of its own (the loadable-class machinery is
/// internal), so this is an ML.NET custom mapping: the saved model names the contract and this assembly, and ML.NET's
/// loader loads this assembly and finds this factory by its contract, with no registration by the user.
/// </summary>
[CustomMappingFactoryAttribute(ContractName)]
internal sealed class EncodedImageDecoding : CustomMappingFactory<EncodedImageRow, DecodedImageRow>
{
    /// <summary>The contract name saved in the model.</summary>
    public const string ContractName = "MlNetFinetune.DecodeEncodedImage";

    /// <summary>The step, reading <see cref="ChainLayout.SourceColumn"/> and writing <see cref="ChainLayout.ResizedImageColumn"/>.</summary>
    internal static CustomMappingEstimator<EncodedImageRow, DecodedImageRow> Estimator(MLContext ml) =>
        ml.Transforms.CustomMapping<EncodedImageRow, DecodedImageRow>(Decode, ContractName);

    /// <inheritdoc/>
    public override Action<EncodedImageRow, DecodedImageRow> GetMapping() => Decode;

    private static void Decode(EncodedImageRow input, DecodedImageRow output)
    {
        // ML.NET reuses one output row per cursor; the previous row's image has been consumed by the resize step.
        output.Image?.Dispose();
        output.Image = ImageDecoder.Decode(input.Bytes, "image");
    }
}
