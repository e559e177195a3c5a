using System.Globalization;
using System.Text.Json;
using MlNetFinetune.Data;
using MlNetFinetune.Trainer;

namespace MlNetFinetune.Tests;

/// <summary>What a user of either program sees of its options: numbers read the same in every culture, one-line errors without .NET type names, serve's own help.</summary>
public sealed class CommandLinePolishTests
{
    private static void AssertOneErrorLine(CommandLineRunner.Outcome outcome, string expected)
    {
        Assert.Equal(2, outcome.ExitCode);
        Assert.Equal($"error: {expected}", outcome.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries)[0]);
        Assert.DoesNotContain("System.", outcome.Error);
        Assert.DoesNotContain("   at ", outcome.Error);
    }

    [Theory]
    [InlineData("abc", "'abc' is not a whole number for --top")]
    [InlineData("99999999999", "'99999999999' is too large for --top (at most 2147483647)")]
    [InlineData("1.5", "'1.5' is not a whole number for --top")]
    [InlineData("0", "--top 0: must be at least 1")]
    public void PredictorTopThatCannotWorkIsOneLineAndExitTwo(string top, string expected)
    {
        // Given a model path that does not exist: the option must be refused before anything is loaded.
        var outcome = CommandLineRunner.Predictor("--model", "missing.zip", "--top", top, "image.png");

        AssertOneErrorLine(outcome, expected);
    }

    [Fact]
    public void ServeHelpShowsServesOwnUsage()
    {
        var outcome = CommandLineRunner.Predictor("serve", "--help");

        Assert.Equal(0, outcome.ExitCode);
        Assert.Contains(" serve [options]", outcome.Output);
        Assert.Contains("--max-body-bytes", outcome.Output);
        Assert.Contains("--allowed-origins", outcome.Output);
        Assert.DoesNotContain("<images>", outcome.Output);
    }

    [Theory]
    [InlineData("https://127.0.0.1:5001", "HTTPS is not served")]
    [InlineData("ftp://127.0.0.1:21", "not an http:// address")]
    public void ServeRefusesAddressesItCannotServeBeforeLoading(string url, string reason)
    {
        var outcome = CommandLineRunner.Predictor("serve", "--model", "missing.zip", "--urls", url);

        Assert.Equal(2, outcome.ExitCode);
        var line = Assert.Single(outcome.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith($"error: --urls {url}: {reason}", line);
    }

    [Theory]
    [InlineData("--l2", "abc", "'abc' is not a number for --l2")]
    [InlineData("--seed", "1.5", "'1.5' is not a whole number for --seed")]
    [InlineData("--image-size", "99999999999", "'99999999999' is too large for --image-size (at most 2147483647)")]
    [InlineData("--search-minutes", "1e300", "--search-minutes 1E+300: at most 15372286728")]
    [InlineData("--held-out-fraction", "1,5", "'1,5' is not a number for --held-out-fraction")]
    public void TrainerOptionErrorsNameTheOptionAndTheText(string option, string value, string expected)
    {
        var outcome = CommandLineRunner.Trainer("--data", TestData.SampleFolder, option, value);

        AssertOneErrorLine(outcome, expected);
    }

    [Fact]
    public void NumbersMeanTheSameUnderAGermanCulture()
    {
        // Given a culture whose decimal separator is ',' and whose '.' separates thousands
        var culture = CultureInfo.CurrentCulture;
        CultureInfo.CurrentCulture = CultureInfo.GetCultureInfo("de-DE");
        try
        {
            // When
            var options = TrainerCommandLine.Parse(["--data", TestData.SampleFolder, "--l2", "0.5", "--held-out-fraction", "0.25", "--search-minutes", "1.5"]);

            // Then
            Assert.Equal(0.5f, options.Head.L2Regularization);
            Assert.Equal(0.25, options.HeldOutFraction);
            Assert.Equal(TimeSpan.FromSeconds(90), options.Head.SearchBudget);
        }
        finally
        {
            CultureInfo.CurrentCulture = culture;
        }
    }

    [Fact]
    public void RedirectedOutputIsNotWrappedAtEightyColumns()
    {
        Assert.True(File.Exists(Path.Combine(FashionMnist.DefaultSourceFolder, "t10k-images-idx3-ubyte.gz")),
            "install the real data first: apt-get install -y dataset-fashion-mnist");
        var root = Directory.CreateTempSubdirectory("mlnetfinetune-wide-").FullName;
        try
        {
            // Given an output folder whose path alone is longer than 80 characters
            var folder = Path.Combine(root, new string('w', 100));
            var output = new StringWriter();
            var console = TrainerCommandLine.CreateConsole(output, redirected: true);

            // When
            var code = TrainerCommandLine.Run(["export-fashion-mnist", "--output", folder, "--per-class", "1"], console, TextWriter.Null);

            // Then every line is whole
            Assert.Equal(0, code);
            Assert.Contains($"10 images written to {Path.Combine(folder, "train")}\n", output.ToString().ReplaceLineEndings("\n"));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}

/// <summary>A German user training with <c>--l2 0.5</c> gets 0.5 in the model and in every report.</summary>
[Collection(SampleModelCollection.Name)]
public sealed class GermanCultureTrainingTests(SampleModelFixture fixture)
{
    [Fact]
    public void L2OfZeroPointFiveIsZeroPointFiveInTheReports()
    {
        var culture = CultureInfo.CurrentCulture;
        CultureInfo.CurrentCulture = CultureInfo.GetCultureInfo("de-DE");
        try
        {
            // Given a small real subset, under de-DE
            var data = TestData.CopySubset(Directory.CreateDirectory(Path.Combine(fixture.Root, "de-DE")).FullName, 12, "Bag", "Sandal");
            var output = Path.Combine(data, "..", "out");

            // When
            var outcome = CommandLineRunner.Trainer("--data", data, "--output", output, "--workspace", fixture.Workspace, "--l2", "0.5", "--image-size", "64", "--features", "s4");

            // Then
            Assert.True(outcome.ExitCode == 0, outcome.Error);
            using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "report.json")));
            Assert.Equal(0.5, report.RootElement.GetProperty("training").GetProperty("l2Regularization").GetDouble());
            Assert.Contains(">0.5<", File.ReadAllText(Path.Combine(output, "report.html")));
            Assert.Contains("L2 = 0.5", File.ReadAllText(Path.Combine(output, "report.md")));
            Assert.Contains("L2 = 0.5", outcome.Output);
        }
        finally
        {
            CultureInfo.CurrentCulture = culture;
        }
    }
}
