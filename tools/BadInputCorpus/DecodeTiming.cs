using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.Data;
using MlNetFinetune.Images;

namespace MlNetFinetune.BadInputCorpus;

/// <summary>
/// What the decoder's checks cost: the median time of <see cref="ImageDecoder.Decode"/> next to ML.NET's own
/// <c>MLImage.CreateFromStream</c> on the same bytes, alternating the two so that both see the same machine load.
/// </summary>
internal static class DecodeTiming
{
    private const int Runs = 9;

    public static string Run(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var reference = new List<double>();
        var decoder = new List<double>();
        for (var run = 0; run < Runs + 2; run++)
        {
            var watch = Stopwatch.StartNew();
            using (MLImage.CreateFromStream(new MemoryStream(bytes, writable: false)))
            {
            }

            var first = watch.Elapsed.TotalMilliseconds;
            watch.Restart();
            using (ImageDecoder.Decode(bytes, path))
            {
            }

            if (run >= 2)
            {
                reference.Add(first);
                decoder.Add(watch.Elapsed.TotalMilliseconds);
            }
        }

        double referenceMedian = Median(reference), decoderMedian = Median(decoder);
        return string.Create(CultureInfo.InvariantCulture,
            $"{path}: MLImage.CreateFromStream {referenceMedian:F1} ms, ImageDecoder.Decode {decoderMedian:F1} ms (x{decoderMedian / referenceMedian:F2}), medians of {Runs}");
    }

    private static double Median(List<double> values) => values.Order().ElementAt(values.Count / 2);
}
