using System.Diagnostics.CodeAnalysis;

namespace MlNetFinetune.Images;

/// <summary>
/// Why an image was refused. Servers map <see cref="TooLarge"/> to 422, <see cref="UnknownFormat"/> to 415 and the
/// others to 400; batch tools skip the image and count it under its problem.
/// </summary>
public enum ImageProblem
{
    /// <summary>The file or body holds no bytes.</summary>
    Empty,

    /// <summary>The first bytes are no signature of a format the decoder reads (PNG, JPEG, GIF, BMP, WebP).</summary>
    UnknownFormat,

    /// <summary>The signature is known but the header that follows is cut short or impossible.</summary>
    MalformedHeader,

    /// <summary>The image data stops before the image is complete, whatever end marker may follow.</summary>
    Truncated,

    /// <summary>The image would decode to more pixels than <see cref="ImageLimits.MaxPixels"/>, or the file is larger than <see cref="ImageLimits.MaxEncodedBytes"/>.</summary>
    TooLarge,

    /// <summary>The data is complete but wrong: a checksum mismatch, an invalid code, a decoder error.</summary>
    Corrupt,

    /// <summary>The file cannot be read: missing, a dangling link, a folder, a FIFO, socket or device, no permission, an I/O error.</summary>
    Unreadable,
}

/// <summary>
/// An image that cannot be used, with where it came from and what is wrong. Its message is one line,
/// "<c>source: what is wrong</c>", naming the limit when one applies. It is an <see cref="IOException"/> (the decoder
/// threw <see cref="InvalidDataException"/> before, which is sealed), so loops over files that skip what they cannot
/// read skip these too.
/// </summary>
public sealed class InvalidImageException : IOException
{
    private string _source;

    /// <summary>Creates the exception; the message is <paramref name="source"/>, a colon, then <paramref name="detail"/>.</summary>
    /// <param name="source">A file path, or a description such as "request body".</param>
    /// <param name="problem">The kind of problem.</param>
    /// <param name="detail">What is wrong, without the source.</param>
    /// <param name="innerException">The error that revealed the problem, if any.</param>
    public InvalidImageException(string source, ImageProblem problem, string detail, Exception? innerException = null)
        : base($"{source}: {detail}", innerException)
    {
        _source = source;
        Problem = problem;
        Detail = detail;
    }

    /// <summary>
    /// Where the image came from: a file path or a description such as "request body". It replaces
    /// <see cref="Exception.Source"/>, which would otherwise name the assembly that threw.
    /// </summary>
    [AllowNull]
    public override string Source
    {
        get => _source;
        set => _source = value ?? string.Empty;
    }

    /// <summary>The kind of problem.</summary>
    public ImageProblem Problem { get; }

    /// <summary>What is wrong, without the source: the message after "<c>source: </c>".</summary>
    public string Detail { get; }
}
