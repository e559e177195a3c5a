using System.Globalization;
using System.Text;
using System.Text.Json;
using MlNetFinetune.Prediction;

namespace MlNetFinetune.Tests;

[Collection(SampleModelCollection.Name)]
public sealed class BatchPredictionTests(SampleModelFixture fixture)
{
    /// <summary>Three good images per class of four classes, plus four files that cannot be read, one with a comma in its name.</summary>
    private (string Folder, string[] Good, string[] Bad) FolderWithBadFiles()
    {
        var root = Directory.CreateDirectory(Path.Combine(fixture.Root, "batch-" + Guid.NewGuid().ToString("N")[..8])).FullName;
        var folder = TestData.CopySubset(root, 3, "Bag", "Coat", "Sandal", "Trouser");
        var good = Directory.GetFiles(folder, "*", SearchOption.AllDirectories);
        var bad = new[]
        {
            Path.Combine(folder, "Bag", "zero.png"),
            Path.Combine(folder, "Coat", "truncated.png"),
            Path.Combine(folder, "Sandal", "notes, not a picture.jpg"),
            Path.Combine(folder, "unsorted.webp"),
        };
        File.WriteAllBytes(bad[0], []);
        File.WriteAllBytes(bad[1], File.ReadAllBytes(good[0])[..40]);
        File.WriteAllText(bad[2], "this is not a picture");
        File.WriteAllText(bad[3], "RIFF....WEBPVP8 garbage");
        return (folder, good, bad);
    }

    [Fact]
    public void CsvHasEveryGoodImagePredictedAndEveryBadOneWithItsError()
    {
        var (folder, good, bad) = FolderWithBadFiles();
        var output = Path.Combine(folder, "..", "results.csv");

        var outcome = CommandLineRunner.Predictor("--model", fixture.Result.ModelPath, "--output", output, "--top", "2", folder);

        Assert.Equal(2, outcome.ExitCode);
        Assert.Empty(outcome.Output);
        Assert.All(bad, file => Assert.Contains($"error: {file}: ", outcome.Error));
        Assert.Contains($"{good.Length + bad.Length}/{good.Length + bad.Length} images done, {bad.Length} unreadable", outcome.Error);
        var rows = ReadCsv(output);
        Assert.Equal(["path", "label", "confidence", "top1_label", "top1_score", "top2_label", "top2_score", "error"], rows[0]);
        var byPath = rows.Skip(1).ToDictionary(row => row[0]);
        Assert.Equal(good.Concat(bad).Order(StringComparer.Ordinal), rows.Skip(1).Select(row => row[0]));

        using var classifier = ImageClassifier.Load(fixture.Result.ModelPath);
        foreach (var file in good)
        {
            var expected = classifier.Predict(file, top: 2);
            var row = byPath[file];
            Assert.Equal(expected.Label, row[1]);
            Assert.Equal(expected.Confidence, float.Parse(row[2], CultureInfo.InvariantCulture));
            Assert.Equal(expected.Top, new LabelScore[] { new(row[3], float.Parse(row[4], CultureInfo.InvariantCulture)), new(row[5], float.Parse(row[6], CultureInfo.InvariantCulture)) });
            Assert.Equal("", row[7]);
        }

        foreach (var file in bad)
        {
            var row = byPath[file];
            Assert.All(row[1..7], field => Assert.Equal("", field));
            Assert.NotEqual("", row[7]);
            Assert.DoesNotContain(file, row[7]);
        }

        Assert.Contains("empty file", byPath[bad[0]][7]);
    }

    [Fact]
    public void JsonLinesHaveAResultOrAnErrorPerImage()
    {
        var (folder, good, bad) = FolderWithBadFiles();
        var output = Path.Combine(folder, "..", "results.jsonl");

        var outcome = CommandLineRunner.Predictor("--model", fixture.Result.ModelPath, "--output", output, folder);

        Assert.Equal(2, outcome.ExitCode);
        var lines = File.ReadAllLines(output).Select(line => JsonDocument.Parse(line).RootElement).ToDictionary(e => e.GetProperty("path").GetString()!);
        Assert.Equal(good.Length + bad.Length, lines.Count);
        Assert.All(good, file =>
        {
            Assert.Equal(3, lines[file].GetProperty("top").GetArrayLength());
            Assert.False(lines[file].TryGetProperty("error", out _));
        });
        Assert.All(bad, file =>
        {
            Assert.False(lines[file].TryGetProperty("label", out _));
            Assert.False(string.IsNullOrWhiteSpace(lines[file].GetProperty("error").GetString()));
        });
    }

    [Fact]
    public void AllGoodImagesExitZero()
    {
        var folder = TestData.CopySubset(Directory.CreateDirectory(Path.Combine(fixture.Root, "batch-ok")).FullName, 2, "Dress", "Shirt");
        var output = Path.Combine(folder, "out", "results.csv");

        var outcome = CommandLineRunner.Predictor("--model", fixture.Result.ModelPath, "--output", output, folder);

        Assert.Equal(0, outcome.ExitCode);
        Assert.Equal(5, File.ReadAllLines(output).Length);
    }

    [Fact]
    public void UnknownOutputExtensionIsOneLineBeforeAnyWork()
    {
        var outcome = CommandLineRunner.Predictor("--model", fixture.Result.ModelPath, "--output", "results.txt", TestData.SampleFolder);

        Assert.Equal(2, outcome.ExitCode);
        Assert.Equal("error: --output results.txt: name the file .csv or .jsonl (JSON lines)", outcome.Error.Trim());
    }

    [Fact]
    public async Task AFifoAndADecompressionBombAreReportedAndTheBatchIsKept()
    {
        // Given good images, a FIFO named like an image (opening it would wait for a writer forever) and a 69-byte PNG
        // declaring 65535x65535 (17 GB decoded)
        var folder = TestData.CopySubset(Directory.CreateDirectory(Path.Combine(fixture.Root, "batch-" + Guid.NewGuid().ToString("N")[..8])).FullName, 3, "Bag", "Coat");
        var good = Directory.GetFiles(folder, "*", SearchOption.AllDirectories);
        var fifo = Path.Combine(folder, "Bag", "x.png");
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", [fifo]))
        {
            await mkfifo.WaitForExitAsync();
            Assert.Equal(0, mkfifo.ExitCode);
        }

        var bomb = Path.Combine(folder, "Coat", "bomb.png");
        var png = File.ReadAllBytes(good[0]);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(16), 65535);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(20), 65535);
        File.WriteAllBytes(bomb, png);
        var output = Path.Combine(folder, "..", "results.csv");

        // When (bounded: a hang fails the test instead of stalling the suite)
        var outcome = await Task.Run(() => CommandLineRunner.Predictor("--model", fixture.Result.ModelPath, "--output", output, folder)).WaitAsync(TimeSpan.FromMinutes(2));

        // Then
        Assert.Equal(2, outcome.ExitCode);
        var byPath = ReadCsv(output).Skip(1).ToDictionary(row => row[0]);
        Assert.Equal(good.Length + 2, byPath.Count);
        Assert.All(good, file => Assert.Equal("", byPath[file][^1]));
        Assert.Contains("not a regular file", byPath[fifo][^1]);
        Assert.Contains("65535x65535", byPath[bomb][^1]);
        Assert.Contains("limit of 40000000", byPath[bomb][^1]);
    }

    /// <summary>RFC 4180: fields separated by commas, quoted when they hold a comma, quote or line break, quotes doubled.</summary>
    private static List<string[]> ReadCsv(string path)
    {
        var rows = new List<string[]>();
        foreach (var line in File.ReadAllLines(path))
        {
            var fields = new List<string>();
            var field = new StringBuilder();
            var quoted = false;
            for (var i = 0; i < line.Length; i++)
            {
                var c = line[i];
                if (quoted && c == '"' && i + 1 < line.Length && line[i + 1] == '"')
                {
                    field.Append('"');
                    i++;
                }
                else if (c == '"')
                {
                    quoted = !quoted;
                }
                else if (c == ',' && !quoted)
                {
                    fields.Add(field.ToString());
                    field.Clear();
                }
                else
                {
                    field.Append(c);
                }
            }

            fields.Add(field.ToString());
            rows.Add([.. fields]);
        }

        return rows;
    }
}
