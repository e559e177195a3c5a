using System.Globalization;
using System.Runtime.InteropServices;

namespace MlNetFinetune.Images;

/// <summary>
/// Reads an image file's bytes without ever blocking on something that is not a regular file: a FIFO named x.png would
/// block <c>open()</c> until a writer appears, and a device may never end. The file type is looked up first (stat, which
/// follows links), and the size is checked against the limit before anything is read.
/// </summary>
internal static class ImageFileReader
{
    private const int TypeMask = 0xF000;
    private const int TypeFifo = 0x1000;
    private const int TypeCharacterDevice = 0x2000;
    private const int TypeDirectory = 0x4000;
    private const int TypeBlockDevice = 0x6000;
    private const int TypeRegularFile = 0x8000;
    private const int TypeSocket = 0xC000;

    public static byte[] Read(string path, ImageLimits limits)
    {
        var status = OperatingSystem.IsWindows() ? null : Stat(path);
        if (status is var (mode, size))
        {
            if ((mode & TypeMask) != TypeRegularFile)
            {
                throw Unreadable(path, (mode & TypeMask) switch
                {
                    TypeDirectory => "a folder, not a file",
                    TypeFifo => "a FIFO (named pipe), not a regular file; reading it could wait forever",
                    TypeSocket => "a socket, not a regular file",
                    TypeCharacterDevice or TypeBlockDevice => "a device, not a regular file",
                    _ => "not a regular file",
                });
            }

            EnsureSize(path, size, limits);
        }
        else if (Directory.Exists(path))
        {
            throw Unreadable(path, "a folder, not a file");
        }
        else if (new FileInfo(path) is { Exists: true, Length: 0 })
        {
            // Without the file type (no stat here), a FIFO or device looks like an empty file: neither is worth opening.
            throw new InvalidImageException(path, ImageProblem.Empty, "empty (0 bytes), or not a regular file");
        }

        try
        {
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
            var length = RandomAccess.GetLength(handle);
            EnsureSize(path, length, limits);
            if (length == 0)
            {
                throw new InvalidImageException(path, ImageProblem.Empty, "empty file (0 bytes)");
            }

            var bytes = new byte[length];
            var read = 0;
            while (read < bytes.Length)
            {
                var count = RandomAccess.Read(handle, bytes.AsSpan(read), read);
                if (count == 0)
                {
                    // The file shrank since its length was read; what is there is decoded (and found truncated).
                    return bytes[..read];
                }

                read += count;
            }

            return bytes;
        }
        catch (Exception e) when (e is (IOException or UnauthorizedAccessException) and not InvalidImageException)
        {
            throw Unreadable(path, e switch
            {
                _ when new FileInfo(path).LinkTarget is { } target => $"a symbolic link to {target}, which cannot be followed (missing, or a loop of links)",
                FileNotFoundException when Path.GetFileName(path).Contains('\uFFFD', StringComparison.Ordinal) =>
                    "not found by this name: the file name on disk is not valid UTF-8 (.NET shows the bad bytes as U+FFFD); rename the file",
                FileNotFoundException or DirectoryNotFoundException => "not found",
                UnauthorizedAccessException => "permission denied",
                _ => $"cannot be read ({e.Message.Split('\n', 2)[0].Trim()})",
            }, e);
        }
    }

    private static void EnsureSize(string path, long size, ImageLimits limits)
    {
        if (size > limits.MaxEncodedBytes)
        {
            throw new InvalidImageException(path, ImageProblem.TooLarge, string.Create(CultureInfo.InvariantCulture,
                $"file of {size} bytes is larger than the limit of {limits.MaxEncodedBytes} bytes"));
        }
    }

    private static InvalidImageException Unreadable(string path, string detail, Exception? inner = null) =>
        new(path, ImageProblem.Unreadable, detail, inner);

    /// <summary>The file's type and permission bits and its size, following links; null when it cannot be looked up.</summary>
    private static (int Mode, long Size)? Stat(string path)
    {
        try
        {
            return SystemNativeStat(path, out var status) == 0 ? (status.Mode, status.Size) : null;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
    }

    /// <summary>
    /// The runtime's own stat (libSystem.Native ships with every .NET on Linux and macOS and backs File and Directory):
    /// unlike libc's <c>struct stat</c>, its layout is the same on every platform, and it reports the file type, which
    /// no public .NET API does. Only the leading fields are declared; the buffer is larger than the runtime writes.
    /// </summary>
    [DllImport("libSystem.Native", EntryPoint = "SystemNative_Stat", SetLastError = true)]
    private static extern int SystemNativeStat([MarshalAs(UnmanagedType.LPUTF8Str)] string path, out FileStatus status);

    [StructLayout(LayoutKind.Sequential, Size = 256)]
    private struct FileStatus
    {
        public int Flags;
        public int Mode;
        public uint Uid;
        public uint Gid;
        public long Size;
    }
}
