using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
using SkiaSharp;

namespace MlNetFinetune.Estimator;

/// <summary>One row of an <see cref="IDataView"/>: its position and its label's class name.</summary>
internal sealed record LabelledRow(long Row, string Label);

/// <summary>
/// The label and image columns of an <see cref="IDataView"/> the estimator trains on, checked, with the class names of
/// the label's key type in key order. Reads rows: labels first (without touching images), then the images of chosen rows.
/// </summary>
internal sealed record LabelledImageColumns(DataViewSchema.Column Label, DataViewSchema.Column Image, bool Encoded, IReadOnlyList<string> ClassNames)
{
    private const string KeyValuesAnnotation = "KeyValues";

    /// <summary>
    /// Finds and checks the columns in <paramref name="schema"/>; <paramref name="what"/> names the data in messages.
    /// Throws <see cref="ArgumentOutOfRangeException"/> (as ML.NET does for a schema mismatch) naming the column, the
    /// expected and the actual type.
    /// </summary>
    public static LabelledImageColumns Find(DataViewSchema schema, string labelColumn, string imageColumn, string what)
    {
        var label = schema.GetColumnOrNull(labelColumn)
            ?? throw Mismatch(what, "label", labelColumn, "a key (map class names to keys with MapValueToKey)", "no such column");
        if (label.Type is not KeyDataViewType { RawType: var raw } key || raw != typeof(uint))
        {
            throw Mismatch(what, "label", labelColumn, "a key of UInt32 (map class names to keys with MapValueToKey)", $"{label.Type}");
        }

        if (key.Count < 2)
        {
            throw Mismatch(what, "label", labelColumn, "a key of 2 or more classes", string.Create(CultureInfo.InvariantCulture, $"{key.Count} class(es)"));
        }

        var image = schema.GetColumnOrNull(imageColumn)
            ?? throw Mismatch(what, "image", imageColumn, "encoded image bytes (LoadRawImageBytes) or an image (LoadImages)", "no such column");
        var encoded = image.Type is VectorDataViewType { ItemType: var item } && item == NumberDataViewType.Byte;
        if (!encoded && image.Type is not ImageDataViewType)
        {
            throw Mismatch(what, "image", imageColumn, "encoded image bytes (a Byte vector, as LoadRawImageBytes makes) or an image (LoadImages)", $"{image.Type}");
        }

        return new LabelledImageColumns(label, image, encoded, ClassNamesOf(label, (int)key.Count));
    }

    /// <summary>The labelled rows of <paramref name="data"/> (rows with a missing label are left out), reading no image.</summary>
    public List<LabelledRow> ReadLabels(IDataView data)
    {
        var rows = new List<LabelledRow>();
        using var cursor = data.GetRowCursor([Label]);
        var getter = cursor.GetGetter<uint>(Label);
        uint key = 0;
        while (cursor.MoveNext())
        {
            getter(ref key);
            if (key > 0)
            {
                rows.Add(new LabelledRow(cursor.Position, ClassNames[(int)key - 1]));
            }
        }

        return rows;
    }

    /// <summary>
    /// The labels and encoded images of the rows <paramref name="wanted"/> picks, in row order; no other row's image is
    /// read. An <see cref="IDataView"/> gives its rows in the same order on every cursor (ML.NET's contract, which
    /// shuffling keeps by seeding each cursor alike); the labels let a caller check that against an earlier pass.
    /// </summary>
    public IEnumerable<(long Row, string? Label, byte[] Encoded)> ReadImages(IDataView data, Func<long, bool> wanted)
    {
        using var cursor = data.GetRowCursor([Label, Image]);
        var label = cursor.GetGetter<uint>(Label);
        Func<byte[]> read = Encoded ? EncodedGetter(cursor) : DecodedGetter(cursor);
        uint key = 0;
        while (cursor.MoveNext())
        {
            if (wanted(cursor.Position))
            {
                label(ref key);
                yield return (cursor.Position, key > 0 ? ClassNames[(int)key - 1] : null, read());
            }
        }
    }

    private Func<byte[]> EncodedGetter(DataViewRowCursor cursor)
    {
        var getter = cursor.GetGetter<VBuffer<byte>>(Image);
        VBuffer<byte> bytes = default;
        return () =>
        {
            getter(ref bytes);
            return bytes.DenseValues().ToArray();
        };
    }

    /// <summary>
    /// Decoded images go to the bottleneck cache as lossless PNG: the cache is keyed by encoded content, and the
    /// featurizer decodes the same pixels back.
    /// </summary>
    private Func<byte[]> DecodedGetter(DataViewRowCursor cursor)
    {
        var getter = cursor.GetGetter<MLImage>(Image);
        MLImage image = null!;
        return () =>
        {
            getter(ref image);
            var colorType = image.PixelFormat == MLPixelFormat.Bgra32 ? SKColorType.Bgra8888 : SKColorType.Rgba8888;
            using var pixels = SKImage.FromPixelCopy(new SKImageInfo(image.Width, image.Height, colorType, SKAlphaType.Premul), image.Pixels);
            using var png = pixels.Encode(SKEncodedImageFormat.Png, 100);
            return png.ToArray();
        };
    }

    /// <summary>The key values as text in key order; keys without text values are named by their number.</summary>
    private static string[] ClassNamesOf(DataViewSchema.Column label, int count)
    {
        if (label.Annotations.Schema.GetColumnOrNull(KeyValuesAnnotation) is { Type: VectorDataViewType { ItemType: TextDataViewType } })
        {
            VBuffer<ReadOnlyMemory<char>> values = default;
            label.GetKeyValues(ref values);
            var names = values.DenseValues().Select(v => v.ToString()).ToArray();
            if (names.Length == count)
            {
                return names;
            }
        }

        return [.. Enumerable.Range(1, count).Select(k => k.ToString(CultureInfo.InvariantCulture))];
    }

    private static ArgumentOutOfRangeException Mismatch(string what, string role, string column, string expected, string actual) =>
        new("inputSchema", $"{what}: {role} column '{column}': expected {expected}, got {actual}");
}
