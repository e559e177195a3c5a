using Microsoft.ML.Data;
using MlNetFinetune.Images;
using static MlNetFinetune.Images.JpegStructure;

namespace MlNetFinetune.Tests.Images;

/// <summary>The JPEG completeness walk, on every coding mode it covers (see Images/Data/README.md for how the files were made).</summary>
public sealed class JpegStructureTests
{
    public static TheoryData<string> CheckedFiles => ["base.jpg", "gray.jpg", "progressive.jpg", "restart.jpg", "progressive-restart.jpg", "gray-progressive.jpg"];

    private static byte[] Data(string name) => File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Images", "Data", name));

    [Theory]
    [MemberData(nameof(CheckedFiles))]
    public void WholeJpegsAreCompleteAndDecodeAsBefore(string name)
    {
        var jpeg = Data(name);

        var finding = Check(jpeg);
        using var decoded = ImageDecoder.Decode(jpeg, name);
        using var reference = MLImage.CreateFromStream(new MemoryStream(jpeg));

        Assert.Equal(Verdict.Complete, finding.Verdict);
        Assert.True(reference.Pixels.SequenceEqual(decoded.Pixels));
    }

    [Theory]
    [MemberData(nameof(CheckedFiles))]
    public void EveryCutInTheImageDataIsFoundWithOrWithoutAFakeEndMarker(string name)
    {
        // Given a whole JPEG, cut at every byte of its image data (from its first scan to its end marker)
        var jpeg = Data(name);
        var firstScan = jpeg.AsSpan().IndexOf((ReadOnlySpan<byte>)[0xFF, 0xDA]);
        var end = jpeg.AsSpan().LastIndexOf((ReadOnlySpan<byte>)[0xFF, 0xD9]);

        // When each cut, and each cut with FFD9 appended, is checked
        var accepted = new List<string>();
        for (var cut = firstScan; cut < end; cut++)
        {
            foreach (var candidate in new[] { jpeg[..cut], [.. jpeg[..cut], 0xFF, 0xD9] })
            {
                if (Check(candidate).Verdict == Verdict.Complete)
                {
                    accepted.Add($"{cut}{(candidate.Length > cut ? "+FFD9" : "")}");
                }
            }
        }

        // Then none passes as whole (libjpeg decodes them all, filling in what is missing)
        Assert.True(end - firstScan > 500);
        Assert.Empty(accepted);
    }

    [Fact]
    public void TruncatedBaselineJpegWithFakeEndDecodesInSkiaSharpButIsRefusedHere()
    {
        // Given a baseline JPEG cut in its image data with FFD9 appended
        var jpeg = Data("base.jpg");
        byte[] cut = [.. jpeg[..(jpeg.Length * 2 / 3)], 0xFF, 0xD9];

        // When SkiaSharp's own loader and the decoder read it
        using var skia = MLImage.CreateFromStream(new MemoryStream(cut));
        var error = Assert.Throws<InvalidImageException>(() => ImageDecoder.Decode(cut, "cut.jpg"));

        // Then the first returns a picture with invented rows; the decoder says how much image data is missing
        Assert.Equal(96, skia.Height);
        Assert.Equal(ImageProblem.Truncated, error.Problem);
        Assert.Matches(@"^cut\.jpg: truncated JPEG \(the image data of scan 1 stops after \d+ of 36 MCUs", error.Message);
    }

    [Fact]
    public void ProgressiveJpegMissingItsLastScansIsTruncated()
    {
        // Given a progressive JPEG whose last scans are dropped at a scan boundary, with FFD9 appended: every scan present is whole
        var jpeg = Data("progressive.jpg");
        var lastScan = jpeg.AsSpan().LastIndexOf((ReadOnlySpan<byte>)[0xFF, 0xDA]);
        byte[] fewerScans = [.. jpeg[..lastScan], 0xFF, 0xD9];

        var finding = Check(fewerScans);

        Assert.Equal(Verdict.Truncated, finding.Verdict);
        Assert.Contains("progressive scans", finding.Detail);
    }

    [Fact]
    public void BytesAfterTheImageDataAreNeverRead()
    {
        var jpeg = Data("progressive-restart.jpg");

        Assert.Equal(Verdict.Complete, Check([.. jpeg, 0xFF, 0xDA, 0x00, 0x02, 0xFF, 0xFF, 0x12]).Verdict);
        Assert.Equal(Verdict.Complete, Check(jpeg[..^2]).Verdict);
    }

    [Fact]
    public void FlippedBitsInTheImageDataAreCorruptOrCaught()
    {
        // Given a baseline JPEG with one byte of its image data replaced by one no Huffman code starts with
        var jpeg = Data("base.jpg");
        var scan = jpeg.AsSpan().IndexOf((ReadOnlySpan<byte>)[0xFF, 0xDA]);
        var damaged = jpeg.ToArray();
        damaged[scan + 40] = 0xFE;
        damaged[scan + 41] = 0xFE;

        var finding = Check(damaged);

        Assert.NotEqual(Verdict.Complete, finding.Verdict);
    }

    [Fact]
    public void ArithmeticCodedJpegsAreNotChecked()
    {
        // The walk knows Huffman coding only; SkiaSharp's result code is all that judges these.
        Assert.Equal(Verdict.NotChecked, Check(Data("arithmetic.jpg")).Verdict);
    }
}
