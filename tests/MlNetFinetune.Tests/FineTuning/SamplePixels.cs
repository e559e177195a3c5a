using Microsoft.ML;
using MlNetFinetune.Training.FineTuning;

namespace MlNetFinetune.Tests.FineTuning;

/// <summary>Real labelled pixel tensors from the committed Fashion-MNIST sample, classes numbered in ordinal order of their names.</summary>
internal static class SamplePixels
{
    public static IReadOnlyList<string> Classes { get; } =
        [.. Directory.GetDirectories(TestData.SampleFolder).Select(Path.GetFileName).Order(StringComparer.Ordinal).Cast<string>()];

    /// <summary>Images <paramref name="skip"/>.. <paramref name="skip"/> + <paramref name="perClass"/> - 1 of every class (files in ordinal order), class by class interleaved.</summary>
    public static List<LabelledPixels> Load(int imageSize, int perClass, int skip = 0)
    {
        var files = new List<(string Path, int Label)>();
        for (var i = skip; i < skip + perClass; i++)
        {
            for (var label = 0; label < Classes.Count; label++)
            {
                var all = Directory.GetFiles(Path.Combine(TestData.SampleFolder, Classes[label])).Order(StringComparer.Ordinal).ToList();
                files.Add((all[i], label));
            }
        }

        return [.. LabelledImages.FromFiles(new MLContext(seed: 1), files, imageSize)];
    }
}
