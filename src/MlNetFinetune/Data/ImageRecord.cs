namespace MlNetFinetune.Data;

/// <summary>One labelled image file: the label is the name of the class subfolder it was found in.</summary>
public sealed record ImageRecord(string Path, string Label);

/// <summary>A file that was not used, and why; it is counted in the report.</summary>
public sealed record SkippedFile(string Path, string Reason);
