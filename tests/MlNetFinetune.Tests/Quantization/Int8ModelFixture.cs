using MlNetFinetune.Backbones;
using MlNetFinetune.Training;

namespace MlNetFinetune.Tests.Quantization;

/// <summary>
/// One workspace in which the committed sample is first featurized by the float backbone, then trained on with
/// <c>--precision int8</c>, as a user switching precision would: shared by the int8 model tests.
/// </summary>
public sealed class Int8ModelFixture : IDisposable
{
    public const string Collection = "int8 model";

    public Int8ModelFixture()
    {
        Root = Directory.CreateTempSubdirectory("mlnetfinetune-int8-model-").FullName;
        Workspace = Path.Combine(Root, "workspace");
        FloatOptions = new TrainingOptions(TestData.SampleFolder, OutputFolder: Path.Combine(Root, "fp32"), Workspace: Workspace, Seed: 7);
        Int8Options = FloatOptions with { OutputFolder = Path.Combine(Root, "int8"), Precision = Precision.Int8 };
        FloatFeatures = new ImageClassifierTrainer(FloatOptions).FeaturizeShard(ShardSpec.Parse("1/1"));
        Result = new ImageClassifierTrainer(Int8Options).Train(log: Log.Add);
    }

    public string Root { get; }

    public string Workspace { get; }

    public TrainingOptions FloatOptions { get; }

    public TrainingOptions Int8Options { get; }

    /// <summary>The float backbone's features of every sample image, computed before the int8 run.</summary>
    public FeaturizationResult FloatFeatures { get; }

    /// <summary>The int8 training run.</summary>
    public TrainingResult Result { get; }

    /// <summary>What the int8 run logged.</summary>
    public List<string> Log { get; } = [];

    public void Dispose() => Directory.Delete(Root, recursive: true);
}

[CollectionDefinition(Int8ModelFixture.Collection)]
public sealed class Int8ModelCollection : ICollectionFixture<Int8ModelFixture>;
