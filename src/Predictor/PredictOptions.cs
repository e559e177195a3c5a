using System.Globalization;

namespace MlNetFinetune.Predictor;

/// <summary>What a batch prediction run does.</summary>
/// <param name="ModelPath">model.zip written by the Trainer.</param>
/// <param name="Inputs">Image files and folders (searched recursively).</param>
/// <param name="Top">Classes listed per image.</param>
/// <param name="Json">One JSON object per image on stdout instead of text.</param>
/// <param name="OutputFile">A .csv or .jsonl file to write the results to instead of stdout; null for stdout.</param>
/// <param name="MaxPixels">Largest width x height an image may declare; larger ones are reported and skipped before decoding.</param>
public sealed record PredictOptions(
    string ModelPath, IReadOnlyList<string> Inputs, int Top = 3, bool Json = false, string? OutputFile = null, long MaxPixels = Images.ImageLimits.DefaultMaxPixels)
{
    /// <summary>Throws <see cref="UserInputException"/> naming the option when a value cannot work, before any work starts.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(ModelPath))
        {
            throw new UserInputException("--model: give the model.zip written by the Trainer");
        }

        if (Top < 1)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"--top {Top}: must be at least 1"));
        }

        if (MaxPixels is < 1 or > Images.ImageLimits.LargestMaxPixels)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"--max-pixels {MaxPixels}: must be between 1 and {Images.ImageLimits.LargestMaxPixels}"));
        }

        if (Inputs.Count == 0)
        {
            throw new UserInputException("give at least one image file or folder");
        }

        if (OutputFile is not null)
        {
            ResultRows.FormatOfFile(OutputFile);
        }
    }
}
