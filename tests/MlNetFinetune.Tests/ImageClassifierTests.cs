using Microsoft.ML;
using MlNetFinetune.Images;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Prediction;

namespace MlNetFinetune.Tests;

[Collection(SampleModelCollection.Name)]
public sealed class ImageClassifierTests(SampleModelFixture fixture)
{
    private string[] SampleFiles(int count) => [.. fixture.Result.HeldOutPredictions.Select(p => p.Path).Take(count)];

    [Fact]
    public void BackboneRunsOnItsOwnSessionAndScoresMatchTheMlNetChain()
    {
        // Given the saved chain run by ML.NET as a whole
        var ml = new MLContext();
        var chain = ml.Model.Load(fixture.Result.ModelPath, out _);
        using var reference = ml.Model.CreatePredictionEngine<ImageInput, ImagePrediction>(chain);
        using var classifier = ImageClassifier.Load(fixture.Result.ModelPath);

        // Then the classifier runs the backbone itself, and every score agrees
        Assert.True(classifier.RunsBackboneDirectly);
        foreach (var file in SampleFiles(40))
        {
            using var image = ImageDecoder.Decode(File.ReadAllBytes(file), file);
            var expected = reference.Predict(new ImageInput { Image = image }).Score;
            var actual = classifier.Scores(image);
            Assert.Equal(expected.Length, actual.Length);
            for (var i = 0; i < expected.Length; i++)
            {
                Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5, $"{file}: score {i} is {actual[i]}, ML.NET's chain says {expected[i]}");
            }
        }
    }

    [Fact]
    public void EnginesShareOneModelAfterTrainingInThisProcess()
    {
        // Given: the fixture trained in this process, the case where one session run from many threads once failed
        using var classifier = ImageClassifier.Load(fixture.Result.ModelPath, maxConcurrency: 4);
        classifier.WarmUp();
        var files = SampleFiles(20);
        var sequential = files.Select(f => classifier.Predict(f, top: 10)).ToArray();

        // When four engines run on one session at once
        var concurrent = new ClassificationResult[files.Length * 8];
        Parallel.For(0, concurrent.Length, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i => concurrent[i] = classifier.Predict(files[i % files.Length], top: 10));

        // Then
        Assert.Equal(4, classifier.EngineCount);
        for (var i = 0; i < concurrent.Length; i++)
        {
            Assert.Equal(sequential[i % files.Length].Top, concurrent[i].Top);
        }
    }

    [Fact]
    public async Task PredictAsyncReadsAStreamThatAllowsOnlyAsynchronousReads()
    {
        // Given a stream like ASP.NET Core's request body, which refuses synchronous reads
        using var classifier = ImageClassifier.Load(fixture.Result.ModelPath);
        var file = SampleFiles(1)[0];
        await using var body = new AsyncOnlyStream(File.ReadAllBytes(file));

        // When
        var result = await classifier.PredictAsync(body, top: 10);

        // Then
        Assert.Equal(classifier.Predict(file, top: 10).Top, result.Top);
        Assert.Equal(classifier.Predict(file, top: 10).Top, (await classifier.PredictAsync(file, top: 10)).Top);
        Assert.Equal(classifier.Predict(file, top: 10).Top, (await classifier.PredictAsync(File.ReadAllBytes(file), top: 10)).Top);
    }

    [Fact]
    public async Task AStreamLongerThanTheLimitIsRefusedWithoutReadingItWhole()
    {
        using var classifier = ImageClassifier.Load(new ImageClassifierOptions { ModelPath = fixture.Result.ModelPath, Limits = new ImageLimits(MaxEncodedBytes: 1000) });
        await using var endless = new AsyncOnlyStream(new byte[1_000_000]);

        var error = await Assert.ThrowsAsync<InvalidImageException>(() => classifier.PredictAsync(endless));

        Assert.Equal(ImageProblem.TooLarge, error.Problem);
        Assert.Contains("limit of 1000 bytes", error.Message);
        Assert.True(endless.Position <= 1000 + 81920, $"read {endless.Position} bytes");
    }

    [Fact]
    public async Task ManyAsyncCallersShareOneEngineAndACancelledCallerStops()
    {
        using var classifier = ImageClassifier.Load(fixture.Result.ModelPath, maxConcurrency: 1);
        var files = SampleFiles(4);
        var expected = files.Select(f => classifier.Predict(f).Label).ToArray();

        var results = await Task.WhenAll(Enumerable.Range(0, 16).Select(i => classifier.PredictAsync(File.ReadAllBytes(files[i % files.Length]))));
        using var cancel = new CancellationTokenSource();
        await cancel.CancelAsync();

        Assert.Equal(Enumerable.Range(0, 16).Select(i => expected[i % files.Length]), results.Select(r => r.Label));
        Assert.Equal(1, classifier.EngineCount);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => classifier.PredictAsync(File.ReadAllBytes(files[0]), cancellationToken: cancel.Token));
    }

    [Fact]
    public void UndecodableBytesAreTheTypedError()
    {
        using var classifier = ImageClassifier.Load(fixture.Result.ModelPath);

        var error = Assert.Throws<InvalidImageException>(() => classifier.Predict("not an image"u8.ToArray(), source: "upload"));

        Assert.StartsWith("upload: ", error.Message);
        Assert.Equal(ImageProblem.UnknownFormat, error.Problem);
    }

    /// <summary>A read-only stream whose synchronous reads throw, as Kestrel's request body does.</summary>
    private sealed class AsyncOnlyStream(byte[] bytes) : Stream
    {
        private int _position;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => _position;
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new InvalidOperationException("Synchronous operations are disallowed.");

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var count = Math.Min(buffer.Length, bytes.Length - _position);
            bytes.AsSpan(_position, count).CopyTo(buffer.Span);
            _position += count;
            return ValueTask.FromResult(count);
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
