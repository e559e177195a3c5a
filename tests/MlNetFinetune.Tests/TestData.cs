namespace MlNetFinetune.Tests;

/// <summary>Where the tests find the committed real sample, and helpers to make small real data sets from it.</summary>
public static class TestData
{
    public static string SampleFolder { get; } = FindSample();

    /// <summary>Copies the first <paramref name="perClass"/> images of each of the given classes into a new folder under <paramref name="root"/>.</summary>
    public static string CopySubset(string root, int perClass, params string[] classes)
    {
        var target = Path.Combine(root, "subset-" + Guid.NewGuid().ToString("N")[..8]);
        foreach (var name in classes)
        {
            var folder = Directory.CreateDirectory(Path.Combine(target, name)).FullName;
            foreach (var file in Directory.GetFiles(Path.Combine(SampleFolder, name)).Order(StringComparer.Ordinal).Take(perClass))
            {
                File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
            }
        }

        return target;
    }

    private static string FindSample()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            var candidate = Path.Combine(directory.FullName, "data", "fashion-mnist-sample");
            if (Directory.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new DirectoryNotFoundException("data/fashion-mnist-sample not found above " + AppContext.BaseDirectory);
    }
}
