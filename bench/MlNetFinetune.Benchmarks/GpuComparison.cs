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
        var backbone = new ResNet18Backbone(new BackboneOptions(options.ImageSize, options.Features));
        var images = ImageFolder.Scan(options.DataFolder).Images.Take(options.Images).ToList();
        var scratch = Directory.CreateTempSubdirectory("mlnetfinetune-gpu-").FullName;
        try
        {
            var ml = new MLContext(1);
            using var cpuStore = FeatureStore.Open(ml, Path.Combine(scratch, "cpu"), backbone, new FeaturizationOptions(options.BatchSize));
            using var gpuStore = FeatureStore.Open(ml, Path.Combine(scratch, "gpu"), backbone, new FeaturizationOptions(options.BatchSize, GpuDevice: options.GpuDevice ?? 0));
            var cpu = cpuStore.Featurize(images);
            var gpu = gpuStore.Featurize(images);
            if (gpu.GpuFallbackMessage is not null)
            {
                output.WriteLine(gpu.GpuFallbackMessage);
                output.WriteLine("no GPU run: the comparison below is CPU against CPU");
            }

            var largest = 0f;
            foreach (var (a, b) in cpu.Images.Zip(gpu.Images).Where(p => p.First.IsUsable && p.Second.IsUsable).Select(p => (p.First.Features!, p.Second.Features!)))
            {
                largest = Math.Max(largest, a.Zip(b, (x, y) => Math.Abs(x - y)).Max());
            }

            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{images.Count} images, {backbone.Describe()}, batch {options.BatchSize}"));
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
