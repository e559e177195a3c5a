using System.Globalization;

namespace MlNetFinetune.LoadTest;

/// <summary>The tool's <c>--name value</c> pairs.</summary>
public sealed class Arguments
{
    private readonly Dictionary<string, string> _values;

    private Arguments(Dictionary<string, string> values) => _values = values;

    public static Arguments Parse(IReadOnlyList<string> args)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < args.Count; i += 2)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Count)
            {
                throw new UserInputException($"{args[i]}: expected --name value pairs");
            }

            values[args[i]] = args[i + 1];
        }

        return new Arguments(values);
    }

    public string Required(string name) => _values.Remove(name, out var value) ? value : throw new UserInputException($"{name} is required");

    public string? Optional(string name) => _values.Remove(name, out var value) ? value : null;

    public int Int(string name, int fallback) => Optional(name) is { } text ? ParseInt(name, text) : fallback;

    public static int ParseInt(string name, string text) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value > 0
            ? value
            : throw new UserInputException($"{name} {text}: expected a whole number of at least 1");

    /// <summary>Throws when an option was given that no one asked for, so a typo is not silently ignored.</summary>
    public void EnsureAllUsed()
    {
        if (_values.Count > 0)
        {
            throw new UserInputException($"{string.Join(", ", _values.Keys)}: unknown option");
        }
    }
}
