using Microsoft.ML.Data;

namespace MlNetFinetune.Pipeline;

/// <summary>
/// One row going into the model: the decoded image and, when training or evaluating, its label. The model takes the
/// decoded image rather than a path (ML.NET's LoadImages reads only files) so that files, streams and bytes all take
/// one route: <see cref="Images.ImageDecoder"/>.
/// </summary>
public sealed class ImageInput
{
    /// <summary>The class name; empty when predicting (the model does not read it).</summary>
    [ColumnName(ColumnNames.Label)]
    public string Label { get; set; } = string.Empty;

    /// <summary>The decoded image, any size: the model resizes it (decode with <see cref="Images.ImageDecoder"/>).</summary>
    [ColumnName(ColumnNames.Image)]
    [AnySizeImageType]
    public MLImage? Image { get; set; }
}
