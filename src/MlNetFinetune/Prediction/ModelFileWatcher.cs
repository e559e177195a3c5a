namespace MlNetFinetune.Prediction;

/// <summary>
/// Calls back when a file is written anew, replaced or renamed into place, once the changes have paused: a copy
/// raises many change events, and loading in the middle of one would read half a file.
/// </summary>
internal sealed class ModelFileWatcher : IDisposable
{
    /// <summary>How long the file must stay unchanged before the callback runs.</summary>
    internal static readonly TimeSpan Quiet = TimeSpan.FromMilliseconds(500);

    private readonly FileSystemWatcher _watcher;
    private readonly Timer _timer;
    private readonly string _name;

    public ModelFileWatcher(string path, Action changed)
    {
        var full = Path.GetFullPath(path);
        _name = Path.GetFileName(full);
        _timer = new Timer(_ => changed(), null, Timeout.Infinite, Timeout.Infinite);
        _watcher = new FileSystemWatcher(Path.GetDirectoryName(full)!, _name)
        {
            NotifyFilter = NotifyFilters.FileName | NotifyFilters.LastWrite | NotifyFilters.Size | NotifyFilters.CreationTime,
        };
        _watcher.Changed += OnChange;
        _watcher.Created += OnChange;
        _watcher.Renamed += OnChange;
        _watcher.EnableRaisingEvents = true;
    }

    public void Dispose()
    {
        _watcher.Dispose();
        _timer.Dispose();
    }

    private void OnChange(object sender, FileSystemEventArgs e)
    {
        if (string.Equals(e.Name, _name, StringComparison.Ordinal))
        {
            _timer.Change(Quiet, Timeout.InfiniteTimeSpan);
        }
    }
}
