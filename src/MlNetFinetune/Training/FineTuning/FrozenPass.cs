using System.Diagnostics;
using System.Security.Cryptography;
using Microsoft.ML.OnnxRuntime;
using MlNetFinetune.Backbones;

namespace MlNetFinetune.Training.FineTuning;

/// <summary>The frozen lower part of the backbone, run once per image into the <see cref="FeatureMapStore"/>.</summary>
internal static class FrozenPass
{
    private const int Batch = 32;

    /// <summary>
    /// Runs the frozen part over <paramref name="images"/> in batches into a new store; with two views, also over each
    /// image mirrored left to right. Every image's pixels and label go into <paramref name="hash"/>.
    /// </summary>
    public static FeatureMapStore Run(BackboneCut cut, IEnumerable<LabelledPixels> images, int views, bool fullPrecision, int classCount,
        IncrementalHash hash, string phase, IProgress<FineTuneProgress>? progress, CancellationToken cancellation)
    {
        var store = new FeatureMapStore(cut.CutShape, views, fullPrecision);
        using var session = BackboneSession.Create(cut.FrozenGraph(fullPrecision), gpuDevice: null, out _);

        // Held for the whole pass: a RunOptions created inline can be finalized while ONNX Runtime still runs with it.
        using var runOptions = new RunOptions();
        var size = cut.Backbone.ImageSize;
        var pixelCount = 3 * size * size;
        var batch = new List<LabelledPixels>(Batch);
        var clock = Stopwatch.StartNew();
        var total = images.TryGetNonEnumeratedCount(out var known) ? known : 0;

        void Flush()
        {
            var input = new float[batch.Count * views * pixelCount];
            for (var i = 0; i < batch.Count; i++)
            {
                batch[i].Pixels.CopyTo(input, i * views * pixelCount);
                if (views == 2)
                {
                    Training.BulkFeaturizer.Mirror(batch[i].Pixels, size).CopyTo(input, ((i * 2) + 1) * pixelCount);
                }
            }

            using var tensor = OrtValue.CreateTensorValueFromMemory(input, [batch.Count * views, 3, size, size]);
            using var outputs = session.Run(runOptions, [Pipeline.ColumnNames.Pixels], [tensor], [BackboneCut.FrozenOutput]);
            var mapValues = cut.CutShape.Size * views;
            for (var i = 0; i < batch.Count; i++)
            {
                store.Add(outputs[0], i * mapValues, batch[i].Label);
            }

            batch.Clear();
            progress?.Report(new FineTuneProgress(phase, 0, store.Count, total, store.Count / clock.Elapsed.TotalSeconds));
        }

        foreach (var image in images)
        {
            cancellation.ThrowIfCancellationRequested();
            if (image.Pixels.Length != pixelCount)
            {
                throw new ArgumentException($"an image has {image.Pixels.Length} pixel values; the backbone at {size} px takes 3 x {size} x {size} = {pixelCount}");
            }

            if (image.Label < 0 || image.Label >= classCount)
            {
                throw new ArgumentException($"label {image.Label} is outside 0..{classCount - 1}");
            }

            hash.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(image.Pixels.AsSpan()));
            hash.AppendData(BitConverter.GetBytes(image.Label));
            batch.Add(image);
            if (batch.Count == Batch)
            {
                Flush();
            }
        }

        if (batch.Count > 0)
        {
            Flush();
        }

        return store;
    }
}
