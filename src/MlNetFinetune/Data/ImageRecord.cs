namespace MlNetFinetune.Data;

/// <summary>One labelled image: a file whose label is the name of the class subfolder it was found in, or encoded bytes held in memory.</summary>
/// <param name="Path">The file, or for images held in memory a name for messages and reports (e.g. "row 17").</param>
/// <param name="Label">The class name.</param>
public sealed record ImageRecord(string Path, string Label)
{
    /// <summary>The encoded image when it is held in memory rather than read from <see cref="Path"/>.</summary>
    public ReadOnlyMemory<byte>? Content { get; init; }
}

/// <summary>A file that was not used, and why; it is counted in the report.</summary>
public sealed record SkippedFile(string Path, string Reason);
