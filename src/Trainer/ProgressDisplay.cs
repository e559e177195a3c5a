using System.Globalization;
using MlNetFinetune.Training;
using Spectre.Console;

namespace MlNetFinetune.Trainer;

/// <summary>Featurization progress: a live bar on a terminal, plain lines when output is redirected.</summary>
public static class ProgressDisplay
{
    private static readonly TimeSpan s_plainInterval = TimeSpan.FromSeconds(5);

    public static T Run<T>(IAnsiConsole console, Func<IProgress<FeaturizationProgress>, T> work)
    {
        if (!console.Profile.Capabilities.Interactive || Console.IsOutputRedirected)
        {
            var last = DateTime.MinValue;
            var finished = false;
            return work(new SynchronousProgress(p =>
            {
                if (!finished && (DateTime.UtcNow - last >= s_plainInterval || p.Done == p.Total))
                {
                    last = DateTime.UtcNow;
                    finished = p.Done == p.Total;
                    console.WriteLine(Describe(p));
                }
            }));
        }

        return console.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                var task = context.AddTask("featurizing", autoStart: true, maxValue: 1);
                var result = work(new SynchronousProgress(p =>
                {
                    task.MaxValue = Math.Max(1, p.Total);
                    task.Value = p.Done;
                    task.Description = Describe(p);
                }));
                task.StopTask();
                return result;
            });
    }

    private static string Describe(FeaturizationProgress p) => string.Create(CultureInfo.InvariantCulture,
        $"featurized {p.Done}/{p.Total} images ({p.Computed} through the backbone, {p.ImagesPerSecond:F1} images/s, {p.Remaining:hh\\:mm\\:ss} left)");

    /// <summary>Reports on the caller's thread; <see cref="Progress{T}"/> would post to the thread pool and lose the last report.</summary>
    private sealed class SynchronousProgress(Action<FeaturizationProgress> report) : IProgress<FeaturizationProgress>
    {
        public void Report(FeaturizationProgress value) => report(value);
    }
}
