using System.Diagnostics;
using System.Globalization;
using MlNetFinetune.Images;
using MlNetFinetune.Prediction;

namespace MlNetFinetune.Predictor;

/// <summary>What became of one image: a result, or the reason there is none.</summary>
public sealed record ImageOutcome(string Path, ClassificationResult? Result, string? Problem);

/// <summary>Classifies many images, in input order, and keeps going past the ones that cannot be read.</summary>
public static class BatchPrediction
{
    /// <summary>
    /// Classifies <paramref name="files"/> with as many images in flight as the classifier has engines, so reading and
    /// decoding overlap the backbone; outcomes come back in the order of <paramref name="files"/>.
    /// </summary>
    public static IEnumerable<ImageOutcome> PredictAll(ImageClassifier classifier, IReadOnlyList<string> files, int top) =>
        files.AsParallel()
            .AsOrdered()
            .WithDegreeOfParallelism(classifier.MaxConcurrency + 1)
            .WithMergeOptions(ParallelMergeOptions.NotBuffered)
            .Select(file =>
            {
                try
                {
                    return new ImageOutcome(file, classifier.Predict(file, top), null);
                }
                catch (InvalidImageException e)
                {
                    return new ImageOutcome(file, null, e.Message);
                }
            });

    /// <summary>
    /// Writes one row per image to <paramref name="outputPath"/> (CSV or JSON lines by extension; written to a temporary
    /// file and renamed, so it is never half a file), reports unreadable images and progress on <paramref name="error"/>,
    /// and returns how many images could not be read.
    /// </summary>
    public static int WriteFile(ImageClassifier classifier, IReadOnlyList<string> files, int top, string outputPath, TextWriter error, bool errorIsTerminal)
    {
        var format = ResultRows.FormatOfFile(outputPath);
        var columns = Math.Min(top, classifier.Classes.Count);
        var progress = new BatchProgress(files.Count, error, errorIsTerminal);
        AtomicFile.Write(outputPath, temporary =>
        {
            using var writer = new StreamWriter(temporary);
            if (format == ResultFormat.Csv)
            {
                writer.WriteLine(ResultRows.CsvHeader(columns));
            }

            foreach (var outcome in PredictAll(classifier, files, top))
            {
                writer.WriteLine(ResultRows.Row(format, columns, outcome.Path, outcome.Result, WithoutPath(outcome)));
                progress.Advance(outcome.Problem);
            }
        });
        progress.Finish(outputPath);
        return progress.Failed;
    }

    // The row already names the file; the exception's message starts with it too.
    private static string? WithoutPath(ImageOutcome outcome) =>
        outcome.Problem is { } problem && problem.StartsWith(outcome.Path + ": ", StringComparison.Ordinal) ? problem[(outcome.Path.Length + 2)..] : outcome.Problem;

    /// <summary>A progress line on stderr: rewritten in place on a terminal, a plain line every few seconds otherwise.</summary>
    private sealed class BatchProgress(int total, TextWriter error, bool terminal)
    {
        private static readonly TimeSpan s_terminalInterval = TimeSpan.FromMilliseconds(200);
        private static readonly TimeSpan s_plainInterval = TimeSpan.FromSeconds(5);

        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private TimeSpan _shownAt;
        private int _shownLength;
        private int _done;

        public int Failed { get; private set; }

        public void Advance(string? problem)
        {
            _done++;
            if (problem is not null)
            {
                Failed++;
                Show($"error: {problem}", keep: true);
            }

            if (_clock.Elapsed - _shownAt >= (terminal ? s_terminalInterval : s_plainInterval))
            {
                Show(Describe(), keep: false);
            }
        }

        public void Finish(string outputPath) => Show($"{Describe()}; wrote {outputPath}", keep: true);

        private string Describe()
        {
            var perSecond = _done / Math.Max(_clock.Elapsed.TotalSeconds, 1e-3);
            var left = TimeSpan.FromSeconds(Math.Round((total - _done) / Math.Max(perSecond, 1e-3)));
            return string.Create(CultureInfo.InvariantCulture,
                $"{_done}/{total} images done, {Failed} unreadable, {perSecond:F1} images/s, {left:hh\\:mm\\:ss} left");
        }

        /// <summary>On a terminal, <paramref name="keep"/> false leaves the cursor on the line so the next one overwrites it.</summary>
        private void Show(string line, bool keep)
        {
            _shownAt = _clock.Elapsed;
            if (!terminal)
            {
                error.WriteLine(line);
                return;
            }

            error.Write('\r' + line.PadRight(_shownLength) + (keep ? "\n" : ""));
            _shownLength = keep ? 0 : line.Length;
        }
    }
}
