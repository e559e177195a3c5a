using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace MlNetFinetune.Data;

/// <summary>What transparent pixels of the rendered emoji become.</summary>
public enum OpenMojiBackground
{
    /// <summary>Kept transparent: the PNGs have an alpha channel, and the image decoder decides what it becomes.</summary>
    Transparent,

    /// <summary>Composited on white by the renderer: opaque RGB PNGs.</summary>
    White,

    /// <summary>Composited on black by the renderer: opaque RGB PNGs.</summary>
    Black,
}

/// <summary>How to turn the npm package <c>openmoji</c> into a colour image data set.</summary>
/// <param name="OutputFolder">Receives train/&lt;class&gt;/*.png, test/&lt;class&gt;/*.png, index.csv and PROVENANCE.md.</param>
/// <param name="Size">Side of the rendered square PNGs in pixels.</param>
/// <param name="SourceFolder">The unpacked package (the folder holding data/openmoji.json and color/svg/); null uses
/// <see cref="OpenMoji.DefaultSourceFolder"/>, where scripts/fetch-openmoji.sh puts it.</param>
/// <param name="MinimumPerClass">A subgroup becomes a class when it has at least this many emoji (skin-tone variants
/// not counted).</param>
/// <param name="Background">What transparent pixels become.</param>
public sealed record OpenMojiExportOptions(
    string OutputFolder,
    int Size,
    string? SourceFolder = null,
    int MinimumPerClass = OpenMoji.DefaultMinimumPerClass,
    OpenMojiBackground Background = OpenMojiBackground.Transparent)
{
    /// <summary>Largest side rendered; beyond it the files only grow, the backbone never sees more than 512 px.</summary>
    public const int MaximumSize = 1024;

    /// <summary>Throws <see cref="UserInputException"/> naming the option when the export cannot run.</summary>
    public void Validate()
    {
        if (Size is < 8 or > MaximumSize)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture, $"--size {Size}: must be between 8 and {MaximumSize} pixels"));
        }

        if (MinimumPerClass < OpenMoji.HeldOutEvery)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture,
                $"--min-per-class {MinimumPerClass}: must be at least {OpenMoji.HeldOutEvery}, so that every class has a held-out image"));
        }

        if (string.IsNullOrWhiteSpace(OutputFolder))
        {
            throw new UserInputException("--output: a folder is needed");
        }
    }
}

/// <summary>What <see cref="OpenMoji.Export"/> wrote.</summary>
/// <param name="PackageVersion">Version of the openmoji package read.</param>
/// <param name="TrainImages">Images written under train/.</param>
/// <param name="TestImages">Images written under test/.</param>
/// <param name="Classes">Class names (subgroups) with their image counts, in name order.</param>
public sealed record OpenMojiExportResult(string PackageVersion, int TrainImages, int TestImages, IReadOnlyList<(string Name, int Images)> Classes);

/// <summary>
/// Writes the OpenMoji emoji (npm package <c>openmoji</c>, CC BY-SA 4.0) as PNG class folders, the layout the Trainer
/// reads: a real, labelled colour data set served by a registry. Each emoji's SVG is rendered by <c>rsvg-convert</c>
/// (Debian package librsvg2-bin). Classes are the package's subgroups that have at least
/// <see cref="OpenMojiExportOptions.MinimumPerClass"/> emoji; skin-tone variants are left out, as they are the same
/// drawing recoloured and would put near-copies of one image on both sides of the held-out split. Every fifth emoji of
/// each class, in the package's order, goes to test/ (20% held out); the rest go to train/.
/// </summary>
public static class OpenMoji
{
    /// <summary>The default of <see cref="OpenMojiExportOptions.MinimumPerClass"/>: 44 classes and 1,748 emoji in openmoji 17.0.0.</summary>
    public const int DefaultMinimumPerClass = 20;

    /// <summary>Every this many-th emoji of a class is held out.</summary>
    public const int HeldOutEvery = 5;

    /// <summary>The SVG renderer run for each emoji (Debian <c>librsvg2-bin</c>).</summary>
    public const string Renderer = "rsvg-convert";

    /// <summary>$XDG_CACHE_HOME/openmoji/package, else ~/.cache/openmoji/package: where scripts/fetch-openmoji.sh unpacks the package.</summary>
    public static string DefaultSourceFolder
    {
        get
        {
            var root = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            if (string.IsNullOrEmpty(root))
            {
                root = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
            }

            return Path.Combine(root, "openmoji", "package");
        }
    }

    /// <summary>One emoji of the package that belongs to a class.</summary>
    public sealed record Emoji(string Hexcode, string Annotation, string Group, string Subgroup);

    /// <summary>
    /// The classes of the package at <paramref name="sourceFolder"/>: its emoji without skin-tone variants, grouped by
    /// subgroup, groups of fewer than <paramref name="minimumPerClass"/> dropped, each in the package's order.
    /// </summary>
    public static IReadOnlyDictionary<string, IReadOnlyList<Emoji>> Classes(string sourceFolder, int minimumPerClass)
    {
        var json = Path.Combine(sourceFolder, "data", "openmoji.json");
        if (!File.Exists(json))
        {
            throw new UserInputException($"{sourceFolder}: not an unpacked openmoji package (no data/openmoji.json); fetch it with scripts/fetch-openmoji.sh");
        }

        List<Emoji> emoji;
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(json));
            emoji = [.. document.RootElement.EnumerateArray()
                .Where(e => !IsSkinToneVariant(e))
                .Select(e => new Emoji(Text(e, "hexcode"), Text(e, "annotation"), Text(e, "group"), Text(e, "subgroups")))
                .Where(e => e.Hexcode.Length > 0 && e.Subgroup.Length > 0)];
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new UserInputException($"{json}: not the openmoji emoji list ({e.Message.Split('\n')[0].Trim()})");
        }

        return emoji.GroupBy(e => e.Subgroup, StringComparer.Ordinal)
            .Where(g => g.Count() >= minimumPerClass)
            .OrderBy(g => g.Key, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => (IReadOnlyList<Emoji>)[.. g], StringComparer.Ordinal);
    }

    /// <summary>Renders the classes' emoji into <see cref="OpenMojiExportOptions.OutputFolder"/>; returns what it wrote.</summary>
    public static OpenMojiExportResult Export(OpenMojiExportOptions options)
    {
        options.Validate();
        var source = options.SourceFolder ?? DefaultSourceFolder;
        var classes = Classes(source, options.MinimumPerClass);
        if (classes.Count < 2)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture,
                $"{source}: fewer than two subgroups have {options.MinimumPerClass} emoji; lower --min-per-class"));
        }

        var svgFolder = Path.Combine(source, "color", "svg");
        var missing = classes.Values.SelectMany(c => c).FirstOrDefault(e => !File.Exists(Path.Combine(svgFolder, e.Hexcode + ".svg")));
        if (missing is not null)
        {
            throw new UserInputException($"{source}: color/svg/{missing.Hexcode}.svg is missing; the package is incomplete, fetch it again with scripts/fetch-openmoji.sh");
        }

        var rendererVersion = RendererVersion();
        var jobs = new List<(Emoji Emoji, string Part, string Path)>();
        foreach (var (name, members) in classes)
        {
            for (var i = 0; i < members.Count; i++)
            {
                var part = i % HeldOutEvery == HeldOutEvery - 1 ? "test" : "train";
                var folder = Directory.CreateDirectory(Path.Combine(options.OutputFolder, part, name)).FullName;
                jobs.Add((members[i], part, Path.Combine(folder, members[i].Hexcode + ".png")));
            }
        }

        try
        {
            Parallel.ForEach(jobs, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount },
                job => Render(Path.Combine(svgFolder, job.Emoji.Hexcode + ".svg"), job.Path, options.Size, options.Background));
        }
        catch (AggregateException e)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e.InnerExceptions[0]);
        }

        var version = PackageVersion(source);
        WriteIndex(options.OutputFolder, jobs);
        WriteProvenance(options, version, rendererVersion, classes);
        return new OpenMojiExportResult(
            version,
            jobs.Count(j => j.Part == "train"),
            jobs.Count(j => j.Part == "test"),
            [.. classes.Select(c => (c.Key, c.Value.Count))]);
    }

    private static bool IsSkinToneVariant(JsonElement entry) =>
        entry.TryGetProperty("skintone", out var tone)
        && (tone.ValueKind == JsonValueKind.Number || tone.ValueKind == JsonValueKind.String && tone.GetString()!.Length > 0);

    private static string Text(JsonElement entry, string property) =>
        entry.TryGetProperty(property, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString()!.Trim() : "";

    private static void Render(string svg, string png, int size, OpenMojiBackground background)
    {
        var arguments = new List<string> { "--width", Invariant(size), "--height", Invariant(size), "--format", "png", "--output", png };
        if (background != OpenMojiBackground.Transparent)
        {
            arguments.AddRange(["--background-color", background == OpenMojiBackground.White ? "white" : "black"]);
        }

        arguments.Add(svg);
        var (exitCode, error) = RunRenderer(arguments);
        if (exitCode != 0)
        {
            throw new InvalidDataException($"{svg}: {Renderer} failed (exit code {exitCode}): {error.Split('\n')[0].Trim()}");
        }
    }

    private static string RendererVersion()
    {
        var (_, output) = RunRenderer(["--version"]);
        return output.Trim();
    }

    private static (int ExitCode, string Output) RunRenderer(IEnumerable<string> arguments)
    {
        var start = new ProcessStartInfo(Renderer) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (Win32Exception)
        {
            throw new UserInputException($"{Renderer}: not found; install it with: apt-get install -y librsvg2-bin");
        }

        using (process)
        {
            var error = process.StandardError.ReadToEndAsync();
            var output = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            return (process.ExitCode, output + error.GetAwaiter().GetResult());
        }
    }

    private static string PackageVersion(string source)
    {
        var package = Path.Combine(source, "package.json");
        if (!File.Exists(package))
        {
            return "unknown";
        }

        using var document = JsonDocument.Parse(File.ReadAllBytes(package));
        return document.RootElement.TryGetProperty("version", out var version) ? version.GetString() ?? "unknown" : "unknown";
    }

    private static void WriteIndex(string outputFolder, IEnumerable<(Emoji Emoji, string Part, string Path)> jobs)
    {
        var csv = new StringBuilder("file,hexcode,class,group,annotation\n");
        foreach (var (emoji, part, path) in jobs)
        {
            csv.Append(part).Append('/').Append(emoji.Subgroup).Append('/').Append(Path.GetFileName(path)).Append(',')
                .Append(emoji.Hexcode).Append(',').Append(emoji.Subgroup).Append(',').Append(emoji.Group).Append(',')
                .Append(Csv(emoji.Annotation)).Append('\n');
        }

        AtomicFile.WriteAllText(Path.Combine(outputFolder, "index.csv"), csv.ToString());
    }

    private static void WriteProvenance(OpenMojiExportOptions options, string version, string rendererVersion, IReadOnlyDictionary<string, IReadOnlyList<Emoji>> classes)
    {
        var text = new StringBuilder();
        text.Append("# OpenMoji as PNG class folders\n\n")
            .Append(CultureInfo.InvariantCulture, $"Source: the npm package `openmoji` {version} (https://openmoji.org, https://www.npmjs.com/package/openmoji), ")
            .Append("its colour SVGs (`color/svg/<hexcode>.svg`) and labels (`data/openmoji.json`).\n\n")
            .Append("Licence: the OpenMoji graphics are licensed under the Creative Commons Attribution-ShareAlike 4.0 International ")
            .Append("licence (CC BY-SA 4.0, https://creativecommons.org/licenses/by-sa/4.0/). All emojis designed by OpenMoji, ")
            .Append("the open-source emoji and icon project. These PNGs are an adaptation (rendered to pixels) and are shared under the same licence.\n\n")
            .Append(CultureInfo.InvariantCulture, $"Rendered by: {rendererVersion}, {options.Size}x{options.Size} px, background {options.Background.ToString().ToLowerInvariant()}")
            .Append(options.Background == OpenMojiBackground.Transparent ? " (RGBA PNGs)" : " (opaque RGB PNGs)").Append(".\n\n")
            .Append(CultureInfo.InvariantCulture, $"Classes: the package's subgroups with at least {options.MinimumPerClass} emoji, skin-tone variants not counted ")
            .Append("and not exported (they are the same drawing recoloured). ")
            .Append(CultureInfo.InvariantCulture, $"Held out: every {HeldOutEvery}th emoji of each class in the package's order is in test/, the rest in train/. ")
            .Append("`index.csv` lists every file with its hexcode, class, group and annotation.\n\n")
            .Append(CultureInfo.InvariantCulture, $"Written by: `mlnet-finetune-train export-openmoji --size {options.Size} --min-per-class {options.MinimumPerClass} ")
            .Append(CultureInfo.InvariantCulture, $"--background {options.Background.ToString().ToLowerInvariant()}`\n\n")
            .Append("| class | images |\n| --- | --: |\n");
        foreach (var (name, members) in classes)
        {
            text.Append(CultureInfo.InvariantCulture, $"| {name} | {members.Count} |\n");
        }

        AtomicFile.WriteAllText(Path.Combine(options.OutputFolder, "PROVENANCE.md"), text.ToString());
    }

    private static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static string Csv(string field) => field.Contains(',') || field.Contains('"') ? $"\"{field.Replace("\"", "\"\"")}\"" : field;
}
