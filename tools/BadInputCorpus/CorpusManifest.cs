using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace MlNetFinetune.BadInputCorpus;

/// <summary>
/// What the bad-input corpus holds and what the tools must do with each entry, so that an end-to-end run can check
/// that every file is accounted for. Paths are relative to the corpus folder, with '/' separators, as .NET reports them
/// (a name that is not valid UTF-8 has U+FFFD in place of each bad byte).
/// </summary>
/// <param name="FormatVersion">1.</param>
/// <param name="DataSets">The class-folder data sets and what training on each must give.</param>
/// <param name="Images">Hostile image files, each usable alone as an input to the Predictor or the server.</param>
/// <param name="Entries">Every other entry under the data sets: good images, odd files, links, folders.</param>
public sealed record CorpusManifest(int FormatVersion, IReadOnlyList<CorpusDataSet> DataSets, IReadOnlyList<CorpusImage> Images, IReadOnlyList<CorpusEntry> Entries)
{
    /// <summary>The manifest's file name in the corpus folder.</summary>
    public const string FileName = "manifest.json";

    /// <summary>camelCase names and enum values, indented, non-ASCII characters as they are (the file is read by tools, never embedded in HTML).</summary>
    public static JsonSerializerOptions JsonOptions { get; } = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    /// <summary>Reads a manifest written by <see cref="CorpusWriter"/>.</summary>
    public static CorpusManifest Read(string corpusFolder) =>
        JsonSerializer.Deserialize<CorpusManifest>(File.ReadAllText(Path.Combine(corpusFolder, FileName)), JsonOptions)
        ?? throw new InvalidDataException($"{corpusFolder}: empty {FileName}");
}

/// <summary>What the tools must do with an entry.</summary>
public enum Expectation
{
    /// <summary>Decoded and used (for training or scoring), under <see cref="CorpusEntry.Label"/>.</summary>
    Used,

    /// <summary>Not usable: named, counted, and its problem given (never fatal).</summary>
    Skipped,

    /// <summary>Left out on purpose (hidden, a link to a folder) and counted as ignored.</summary>
    Ignored,

    /// <summary>Used, but left out of the held-out score: a byte-identical copy of a training image.</summary>
    Excluded,

    /// <summary>A folder, walked like any other; its files are listed on their own.</summary>
    Folder,
}

/// <summary>A class-folder data set in the corpus.</summary>
/// <param name="Path">The folder.</param>
/// <param name="Role">"training" (--data) or "held-out" (--test, used with the training set named in <paramref name="TrainedWith"/>).</param>
/// <param name="Classes">The classes a model trained on it must have.</param>
/// <param name="MustTrain">False when training on it must stop with an error naming <paramref name="Note"/>'s class.</param>
/// <param name="Note">What is special about it.</param>
/// <param name="TrainedWith">For a held-out set, the training set it goes with.</param>
public sealed record CorpusDataSet(string Path, string Role, IReadOnlyList<string> Classes, bool MustTrain, string Note, string? TrainedWith = null);

/// <summary>A hostile image file.</summary>
/// <param name="Path">The file.</param>
/// <param name="Kind">What it is, e.g. "gif-frame-bomb".</param>
/// <param name="Expect"><see cref="Expectation.Used"/> or <see cref="Expectation.Skipped"/>.</param>
/// <param name="Problem">When skipped, the decoder's problem kind (MlNetFinetune.Images.ImageProblem): TooLarge, Truncated, Empty, UnknownFormat, ...</param>
/// <param name="Label">The class folder it lies in.</param>
/// <param name="Note">How it is made and why it is hostile.</param>
/// <param name="Orientation">For the EXIF orientation images, the tag (1 to 8); decoded, each is the same upright picture.</param>
public sealed record CorpusImage(string Path, string Kind, Expectation Expect, string? Problem, string Label, string Note, int? Orientation = null);

/// <summary>An entry of a data set other than the hostile images.</summary>
/// <param name="Path">The file, link or folder.</param>
/// <param name="Kind">What it is, e.g. "image", "fifo", "link-to-parent".</param>
/// <param name="Expect">What the tools must do with it.</param>
/// <param name="Problem">When skipped, the problem kind (ImageProblem), also what a tool given this path alone must report.</param>
/// <param name="Label">The class it counts for when used or excluded.</param>
/// <param name="Note">Why, when it is not a plain image.</param>
/// <param name="DuplicateOf">A byte-identical file elsewhere in the corpus.</param>
public sealed record CorpusEntry(string Path, string Kind, Expectation Expect, string? Problem = null, string? Label = null, string? Note = null, string? DuplicateOf = null);
