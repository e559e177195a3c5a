using MlNetFinetune.Backbones;
using MlNetFinetune.Trainer;

namespace MlNetFinetune.Tests.Quantization;

/// <summary>The Trainer's --precision: parsed into the options, refused in one line when it cannot work.</summary>
public sealed class PrecisionOptionTests
{
    [Theory]
    [InlineData(new string[0], Precision.Fp32)]
    [InlineData(new[] { "--precision", "int8" }, Precision.Int8)]
    [InlineData(new[] { "--precision", "INT8" }, Precision.Int8)]
    [InlineData(new[] { "--precision", "fp32" }, Precision.Fp32)]
    public void PrecisionMapsToTheOptions(string[] precision, Precision expected)
    {
        var options = TrainerCommandLine.Parse(["--data", TestData.SampleFolder, .. precision]);

        Assert.Equal(expected, options.Precision);
    }

    [Fact]
    public void CalibrationImagesMapToTheQuantizationOptions()
    {
        var options = TrainerCommandLine.Parse(["--data", TestData.SampleFolder, "--precision", "int8", "--calibration-images", "64"]);

        Assert.Equal(64, options.Quantization.CalibrationImages);
    }

    [Theory]
    [InlineData("--precision int4: use fp32 or int8", "--precision", "int4")]
    [InlineData("--precision : use fp32 or int8", "--precision", "")]
    [InlineData("--precision int8 runs on the CPU only", "--precision", "int8", "--gpu")]
    [InlineData("--precision int8: only the built-in resnet18 backbone is quantized", "--precision", "int8", "--backbone", "{model}")]
    [InlineData("--calibration-images 0: must be at least 1", "--precision", "int8", "--calibration-images", "0")]
    public void PrecisionThatCannotWorkIsOneErrorLineAndExitTwo(string expected, params string[] args)
    {
        // Given an ONNX file for --backbone (its content is not read before the options are refused)
        var model = Path.Combine(Directory.CreateTempSubdirectory("mlnetfinetune-precision-").FullName, "own.onnx");
        File.WriteAllBytes(model, [0]);

        // When the Trainer is started with the option
        var outcome = CommandLineRunner.Trainer(["--data", TestData.SampleFolder, .. args.Select(a => a.Replace("{model}", model, StringComparison.Ordinal))]);

        // Then it stops before any work with one error line
        Assert.Equal(2, outcome.ExitCode);
        var errors = outcome.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith("error:", StringComparison.Ordinal)).ToList();
        var line = Assert.Single(errors);
        Assert.StartsWith($"error: {expected}", line);
        Assert.Empty(outcome.Output);
        Directory.Delete(Path.GetDirectoryName(model)!, recursive: true);
    }
}
