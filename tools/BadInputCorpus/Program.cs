using System.Globalization;
using MlNetFinetune;
using MlNetFinetune.BadInputCorpus;

const string Usage = """
    usage:
      mlnet-finetune-bad-input-corpus write <folder> [--sample <data/fashion-mnist-sample>]
          writes the bad-input corpus and its manifest.json into <folder> (new or empty)
      mlnet-finetune-bad-input-corpus decode <file>...
          decodes each file with ImageDecoder.DecodeFile and prints the outcome and the process's peak memory during it
      mlnet-finetune-bad-input-corpus time <file>...
          times ImageDecoder.Decode next to MLImage.CreateFromStream on each (valid) file
    """;

try
{
    switch (args)
    {
        case ["write", var folder, .. var rest]:
            var sample = rest switch
            {
                ["--sample", var given] => given,
                [] => CorpusWriter.FindSample(Environment.CurrentDirectory) ?? CorpusWriter.FindSample(AppContext.BaseDirectory)
                    ?? throw new UserInputException("data/fashion-mnist-sample not found above this folder; give --sample <folder>"),
                _ => throw new UserInputException(Usage),
            };
            var manifest = CorpusWriter.Write(folder, sample);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{folder}: {manifest.Images.Count} hostile image files and {manifest.Entries.Count} other entries in {manifest.DataSets.Count} data sets; see {CorpusManifest.FileName}"));
            return 0;
        case ["decode", .. var files] when files.Length > 0:
            foreach (var file in files)
            {
                Console.WriteLine(DecodeMeasurement.Run(file));
            }

            return 0;
        case ["time", .. var files] when files.Length > 0:
            foreach (var file in files)
            {
                Console.WriteLine(DecodeTiming.Run(file));
            }

            return 0;
        default:
            throw new UserInputException(Usage);
    }
}
catch (Exception e) when (e is UserInputException or IOException)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}
