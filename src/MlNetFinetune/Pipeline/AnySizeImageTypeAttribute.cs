using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;

namespace MlNetFinetune.Pipeline;

/// <summary>
/// Marks an <see cref="MLImage"/> member as an image column of any size. ML.NET 5.0.1's own parameterless
/// <c>[ImageType]</c> fails when it registers (it builds a 0x0 <see cref="ImageDataViewType"/> through the checked
/// constructor), so this registers the unchecked any-size type instead.
/// </summary>
[AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
internal sealed class AnySizeImageTypeAttribute : DataViewTypeAttribute
{
    public override void Register() => DataViewTypeManager.Register(new ImageDataViewType(), typeof(MLImage), this);

    public override bool Equals(DataViewTypeAttribute other) => other is AnySizeImageTypeAttribute;

    public override bool Equals(object? obj) => obj is AnySizeImageTypeAttribute;

    public override int GetHashCode() => typeof(AnySizeImageTypeAttribute).GetHashCode();
}
