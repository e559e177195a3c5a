using System.Globalization;
using MlNetFinetune.Data;

namespace MlNetFinetune.Training;

/// <summary>
/// The images of a training run, split: train and validation from the data folder, held-out from the test folder or a
/// seeded stratified share of the data folder; plus what the scan skipped or ignored.
/// </summary>
internal sealed record TrainingImages(
    ImageFolder Data,
    string? TestRoot,
    IReadOnlyList<ImageRecord> Train,
    IReadOnlyList<ImageRecord> Validation,
    IReadOnlyList<ImageRecord> HeldOut,
    string HeldOutSource,
    IReadOnlyList<SkippedFile> Skipped,
    IReadOnlyList<IgnoredEntry> Ignored)
{
    /// <summary>Every image, train first, then validation, then held-out.</summary>
    public IReadOnlyList<ImageRecord> All => [.. Train, .. Validation, .. HeldOut];

    /// <summary>Path relative to its folder, prefixed so that a training and a test image never collide.</summary>
    public string RelativePath(string path) => TestRoot is not null && path.StartsWith(TestRoot + Path.DirectorySeparatorChar, StringComparison.Ordinal)
        ? "test/" + Path.GetRelativePath(TestRoot, path)
        : "data/" + Path.GetRelativePath(Data.Root, path);

    /// <summary>Scans the folders of <paramref name="options"/> and splits them (seeded, stratified).</summary>
    public static TrainingImages Collect(TrainingOptions options)
    {
        var data = ImageFolder.Scan(options.DataFolder);
        var skipped = new List<SkippedFile>(data.Skipped);
        var ignored = new List<IgnoredEntry>(data.Ignored);
        IReadOnlyList<ImageRecord> trainAndValidation;
        IReadOnlyList<ImageRecord> heldOut;
        string heldOutSource;
        string? testRoot = null;
        if (options.TestFolder is not null)
        {
            var test = ImageFolder.Scan(options.TestFolder, minimumClasses: 1);
            var unknown = test.Classes.Except(data.Classes, StringComparer.Ordinal).ToList();
            if (unknown.Count > 0)
            {
                throw new UserInputException($"{options.TestFolder}: class folder(s) {string.Join(", ", unknown)} not in the training data {options.DataFolder}");
            }

            trainAndValidation = data.Images;
            heldOut = test.Images;
            heldOutSource = $"test folder {options.TestFolder}";
            testRoot = test.Root;
            skipped.AddRange(test.Skipped);
            ignored.AddRange(test.Ignored);
        }
        else
        {
            (trainAndValidation, heldOut) = StratifiedSplit.Split(data.Images, options.HeldOutFraction, options.Seed);
            heldOutSource = string.Create(CultureInfo.InvariantCulture, $"stratified {options.HeldOutFraction:P0} of {options.DataFolder}, seed {options.Seed}");
        }

        var (train, validation) = StratifiedSplit.Split(trainAndValidation, options.ValidationFraction, options.Seed + 1);
        return new TrainingImages(data, testRoot, train, validation, heldOut, heldOutSource, skipped, ignored);
    }

    /// <summary>One line for the console: how many images and classes, how they were split, what was left out.</summary>
    public string Describe()
    {
        var line = string.Create(CultureInfo.InvariantCulture,
            $"{Data.Images.Count} images in {Data.Classes.Count} classes: {Train.Count} train, {Validation.Count} validation, {HeldOut.Count} held-out");
        if (Ignored.Count > 0)
        {
            var kinds = Ignored.GroupBy(i => i.Reason).OrderByDescending(g => g.Count()).Select(g => string.Create(CultureInfo.InvariantCulture, $"{g.Count()} {g.Key}"));
            line += $"; ignored: {string.Join(", ", kinds)}";
        }

        return line;
    }
}
