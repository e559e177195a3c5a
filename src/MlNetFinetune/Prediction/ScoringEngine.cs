using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using MlNetFinetune.Pipeline;

namespace MlNetFinetune.Prediction;

/// <summary>One prediction at a time: the per-caller state of a loaded model. Not thread-safe; a pool hands them out.</summary>
internal interface IScoringEngine : IDisposable
{
    /// <summary>Probabilities of all classes, in the model's class order.</summary>
    float[] Score(MLImage image);
}

/// <summary>The whole ML.NET chain in one <see cref="PredictionEngine{TSrc,TDst}"/>: for a chain that cannot be split around its backbone.</summary>
internal sealed class ChainEngine(MLContext ml, ITransformer model) : IScoringEngine
{
    private readonly PredictionEngine<ImageInput, ImagePrediction> _engine = ml.Model.CreatePredictionEngine<ImageInput, ImagePrediction>(model);

    public float[] Score(MLImage image) => _engine.Predict(new ImageInput { Image = image }).Score;

    public void Dispose() => _engine.Dispose();
}

/// <summary>
/// The chain split around its backbone: ML.NET's steps up to the pixels, the backbone graph on a shared tuned
/// <see cref="InferenceSession"/> into buffers this engine owns, then ML.NET's head on those features. Only the small
/// ML.NET engines and two buffers are per engine; the network's weights are loaded once, in the session.
/// </summary>
internal sealed class SplitEngine : IScoringEngine
{
    private readonly PredictionEngine<ImageInput, PixelsRow> _preprocess;
    private readonly PredictionEngine<FeaturesRow, ImagePrediction> _head;
    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions = new();
    private readonly string[] _inputNames;
    private readonly string[] _outputNames;
    private readonly long[] _inputShape;
    private readonly FeaturesRow _features;
    private readonly OrtValue[] _featureValues;
    private readonly ImageInput _input = new();
    private PixelsRow _pixels = new();
    private ImagePrediction _prediction = new();

    public SplitEngine(MLContext ml, SavedChain chain, InferenceSession session, SavedChain.NodeArg input, SavedChain.NodeArg output)
    {
        _session = session;
        _inputNames = [input.Name];
        _outputNames = [output.Name];
        _inputShape = input.Dimensions;
        _preprocess = ml.Model.CreatePredictionEngine<ImageInput, PixelsRow>(chain.Preprocess!, outputSchemaDefinition: PixelsRow.Schema(input));
        _head = ml.Model.CreatePredictionEngine<FeaturesRow, ImagePrediction>(chain.Head!, inputSchemaDefinition: FeaturesRow.Schema(output));
        _features = new FeaturesRow { Values = new float[output.Length] };
        _featureValues = [OrtValue.CreateTensorValueFromMemory(_features.Values, output.Dimensions)];
    }

    public float[] Score(MLImage image)
    {
        _input.Image = image;
        _preprocess.Predict(_input, ref _pixels);
        using (var pixels = OrtValue.CreateTensorValueFromMemory(_pixels.Values, _inputShape))
        {
            _session.Run(_runOptions, _inputNames, [pixels], _outputNames, _featureValues);
        }

        _head.Predict(_features, ref _prediction);
        _input.Image = null;
        return [.. _prediction.Score];
    }

    public void Dispose()
    {
        _preprocess.Dispose();
        _head.Dispose();
        _featureValues[0].Dispose();
        _runOptions.Dispose();
    }

    /// <summary>The preprocessing's output: the backbone's input, by the graph input's name.</summary>
    private sealed class PixelsRow
    {
        public float[] Values { get; set; } = [];

        public static SchemaDefinition Schema(SavedChain.NodeArg input)
        {
            var schema = SchemaDefinition.Create(typeof(PixelsRow), SchemaDefinition.Direction.Both);
            schema[0].ColumnName = input.Name;
            schema[0].ColumnType = new VectorDataViewType(NumberDataViewType.Single, checked((int)input.Length));
            return schema;
        }
    }

    /// <summary>The head's input: the backbone's output, by the graph output's name.</summary>
    private sealed class FeaturesRow
    {
        public float[] Values { get; set; } = [];

        public static SchemaDefinition Schema(SavedChain.NodeArg output)
        {
            var schema = SchemaDefinition.Create(typeof(FeaturesRow), SchemaDefinition.Direction.Both);
            schema[0].ColumnName = output.Name;
            schema[0].ColumnType = new VectorDataViewType(NumberDataViewType.Single, checked((int)output.Length));
            return schema;
        }
    }
}
