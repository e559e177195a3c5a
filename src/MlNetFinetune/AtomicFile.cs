namespace MlNetFinetune;

/// <summary>Writes files so that a reader sees the old file or the whole new one, never half of one.</summary>
public static class AtomicFile
{
    /// <summary>Lets <paramref name="write"/> fill a temporary file beside <paramref name="path"/>, then renames it over <paramref name="path"/>.</summary>
    public static void Write(string path, Action<string> write)
    {
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        RemoveStaleTemporaries(full);
        var temporary = $"{full}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            write(temporary);
            File.Move(temporary, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temporary))
            {
                File.Delete(temporary);
            }
        }
    }

    /// <summary>
    /// Deletes temporaries of <paramref name="full"/> left by processes that no longer run (killed mid-write), so they do
    /// not pile up; those of live processes (another run writing the same file now) are left alone.
    /// </summary>
    private static void RemoveStaleTemporaries(string full)
    {
        var prefix = Path.GetFileName(full) + ".tmp-";
        foreach (var file in Directory.EnumerateFiles(Path.GetDirectoryName(full)!, prefix + "*"))
        {
            var pidText = Path.GetFileName(file)[prefix.Length..].Split('-')[0];
            if (int.TryParse(pidText, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var pid) && !IsRunning(pid))
            {
                try
                {
                    File.Delete(file);
                }
                catch (IOException)
                {
                    // Another run cleaning up at the same moment; either way the file goes.
                }
            }
        }
    }

    private static bool IsRunning(int pid)
    {
        if (pid == Environment.ProcessId)
        {
            return true;
        }

        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    /// <summary>Writes <paramref name="text"/> (UTF-8) to <paramref name="path"/> atomically.</summary>
    public static void WriteAllText(string path, string text) => Write(path, temporary => File.WriteAllText(temporary, text));
}
