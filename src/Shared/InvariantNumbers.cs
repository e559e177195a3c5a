using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace MlNetFinetune.CommandLine;

/// <summary>
/// Numbers on the command line are read the same way everywhere: with the invariant culture (System.CommandLine would
/// read "0.5" as 5 under a German culture, where '.' separates thousands), and with an error that names the option and
/// the text instead of a .NET type name ("Cannot parse argument 'abc' ... as expected type 'System.Nullable`1[...]'").
/// Linked into both programs.
/// </summary>
internal static class InvariantNumbers
{
    /// <summary>Makes <paramref name="option"/> (int, long, float or double, nullable or not) parse its value culture-invariantly.</summary>
    public static Option<T> Invariant<T>(this Option<T> option)
    {
        option.CustomParser = result => Parse<T>(result, option.Name);
        return option;
    }

    /// <summary>Parses <paramref name="text"/> as <typeparamref name="T"/>; null and a one-line reason when it is not one.</summary>
    public static (T? Value, string? Error) TryParse<T>(string text, string optionName)
    {
        var type = Nullable.GetUnderlyingType(typeof(T)) ?? typeof(T);
        var integral = type == typeof(int) || type == typeof(long);
        object? value = type switch
        {
            _ when type == typeof(int) => int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var i) ? i : null,
            _ when type == typeof(long) => long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l) ? l : null,
            _ when type == typeof(float) => float.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var f) && float.IsFinite(f) ? f : null,
            _ when type == typeof(double) => double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && double.IsFinite(d) ? d : null,
            _ => throw new ArgumentException($"{optionName}: {type.Name} is not a number type", nameof(T)),
        };
        if (value is not null)
        {
            return ((T)value, null);
        }

        var digits = text.StartsWith('-') ? text[1..] : text;
        var tooLarge = integral && digits.Length > 0 && digits.All(char.IsAsciiDigit);
        return (default, tooLarge
            ? string.Create(CultureInfo.InvariantCulture, $"'{text}' is too large for {optionName} (at most {(type == typeof(int) ? int.MaxValue : long.MaxValue)})")
            : $"'{text}' is not a {(integral ? "whole number" : "number")} for {optionName}");
    }

    private static T? Parse<T>(ArgumentResult result, string optionName)
    {
        // An option of arity zero-or-one given without a value (e.g. a bare --gpu) has no token.
        if (result.Tokens.Count == 0)
        {
            return default;
        }

        var (value, error) = TryParse<T>(result.Tokens[^1].Value, optionName);
        if (error is not null)
        {
            result.AddError(error);
        }

        return value;
    }
}
