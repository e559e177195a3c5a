using MlNetFinetune.Training;

namespace MlNetFinetune.Tests;

/// <summary>
/// Trains once on the committed real sample (500 Fashion-MNIST images, 20% held out) with a private bottleneck cache,
/// and shares the result with every test that needs a trained model.
/// </summary>
public sealed class SampleModelFixture : IDisposable
{
    public SampleModelFixture()
    {
        Root = Directory.CreateTempSubdirectory("mlnetfinetune-tests-").FullName;
        Workspace = Path.Combine(Root, "workspace");
        Options = new TrainingOptions(TestData.SampleFolder, OutputFolder: Path.Combine(Root, "model"), Workspace: Workspace, Seed: 7);
        Result = new ImageClassifierTrainer(Options).Train();
    }

    public string Root { get; }

    public string Workspace { get; }

    public TrainingOptions Options { get; }

    public TrainingResult Result { get; }

    public void Dispose() => Directory.Delete(Root, recursive: true);
}

[CollectionDefinition(Name)]
public sealed class SampleModelCollection : ICollectionFixture<SampleModelFixture>
{
    public const string Name = "sample model";
}
