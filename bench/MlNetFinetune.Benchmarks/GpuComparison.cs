using System.Globalization;
using Microsoft.ML;
using MlNetFinetune.Backbones;
using MlNetFinetune.Data;
using MlNetFinetune.Training;

namespace MlNetFinetune.Benchmarks;

/// <summary>Featurizes the same images on the CPU and on a CUDA device and compares speed and features.</summary>
public static class GpuComparison
{
    public static int Run(BenchmarkOptions options, TextWriter output)
    {
        var backbone = new BackboneOptions(options.ImageSize, options.Features);
        var paths = ImageFolder.Scan(options.DataFolder).Images.Take(options.Images).Select(i => i.Path).ToList();
        var scratch = Directory.CreateTempSubdirectory("mlnetfinetune-gpu-").FullName;
        try
        {
            var ml = new MLContext(1);
            using var cpuCache = BottleneckCache.Open(scratch, "cpu", backbone.FeatureSize);
            using var gpuCache = BottleneckCache.Open(scratch, "gpu", backbone.FeatureSize);
            var cpu = new BulkFeaturizer(ml, backbone, new FeaturizationOptions(options.BatchSize)).Featurize(paths, cpuCache);
            var gpu = new BulkFeaturizer(ml, backbone, new FeaturizationOptions(options.BatchSize, GpuDevice: options.GpuDevice ?? 0)).Featurize(paths, gpuCache);
            if (gpu.GpuFallbackMessage is not null)
            {
                output.WriteLine(gpu.GpuFallbackMessage);
                output.WriteLine("no GPU run: the comparison below is CPU against CPU");
            }

            var largest = 0f;
            foreach (var key in cpu.KeyByPath.Values)
            {
                if (cpuCache.TryGet(key, out var a) && gpuCache.TryGet(key, out var b))
                {
                    largest = Math.Max(largest, a.Zip(b, (x, y) => Math.Abs(x - y)).Max());
                }
            }

            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{paths.Count} images, {backbone.Describe()}, batch {options.BatchSize}"));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"CPU featurization: {cpu.ImagesPerSecond:F1} images/s"));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"GPU featurization: {gpu.ImagesPerSecond:F1} images/s"));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"largest |CPU - GPU| feature difference: {largest:G3}"));
            return 0;
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }
}
