using System.Runtime.InteropServices;
using System.Text;

namespace MlNetFinetune.BadInputCorpus;

/// <summary>The two file-system entries .NET cannot make: a FIFO, and a name that is not valid UTF-8 (.NET strings always encode to valid UTF-8).</summary>
internal static class Posix
{
    /// <summary>Creates a FIFO (named pipe) at <paramref name="path"/>.</summary>
    public static void CreateFifo(string path)
    {
        if (MakeFifo(NulTerminated(Encoding.UTF8.GetBytes(path)), 0x1A4) != 0)
        {
            throw new IOException($"{path}: mkfifo failed (errno {Marshal.GetLastPInvokeError()})");
        }
    }

    /// <summary>Renames <paramref name="path"/> to the raw bytes <paramref name="name"/> in the same folder; returns the name as .NET reports it.</summary>
    public static string RenameToRawName(string path, byte[] name)
    {
        var folder = Encoding.UTF8.GetBytes(Path.GetDirectoryName(path)! + "/");
        if (Rename(NulTerminated(Encoding.UTF8.GetBytes(path)), NulTerminated([.. folder, .. name])) != 0)
        {
            throw new IOException($"{path}: rename failed (errno {Marshal.GetLastPInvokeError()})");
        }

        // .NET decodes file names as UTF-8, replacing each invalid sequence with U+FFFD.
        return Encoding.UTF8.GetString(name);
    }

    /// <summary>Removes the file named by the raw bytes <paramref name="name"/> in <paramref name="folder"/>, if it is there.</summary>
    public static void Remove(string folder, byte[] name) =>
        Unlink(NulTerminated([.. Encoding.UTF8.GetBytes(folder + "/"), .. name]));

    private static byte[] NulTerminated(byte[] bytes) => [.. bytes, 0];

    [DllImport("libc", EntryPoint = "mkfifo", SetLastError = true)]
    private static extern int MakeFifo(byte[] path, uint mode);

    [DllImport("libc", EntryPoint = "unlink", SetLastError = true)]
    private static extern int Unlink(byte[] path);

    [DllImport("libc", EntryPoint = "rename", SetLastError = true)]
    private static extern int Rename(byte[] from, byte[] to);
}
