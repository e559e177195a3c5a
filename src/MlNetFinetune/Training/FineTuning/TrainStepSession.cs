using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Onnx;

namespace MlNetFinetune.Training.FineTuning;

/// <summary>
/// The train-step and evaluation graphs in ONNX Runtime, with the weights and momenta held in two sets of
/// buffers bound once through IO bindings: a step reads one set and writes the other, then the roles swap, so the
/// weights never leave their buffers and no step allocates them. The buffers are managed arrays, read and written
/// directly for checkpoints and export.
/// </summary>
internal sealed class TrainStepSession : IDisposable
{
    private readonly InferenceSession _train;
    private readonly InferenceSession _evaluate;
    private readonly IReadOnlyList<string> _names;
    private readonly Dictionary<string, long[]> _shapes;
    private readonly float[][][] _weights;
    private readonly float[][][] _momenta;
    private readonly List<OrtValue> _values = [];
    private readonly OrtIoBinding[] _bindings;
    private readonly float[] _learningRate = [0];
    private readonly float[] _headLearningRate = [0];
    private readonly float[] _loss = [0];
    private readonly float[] _correct = [0];
    private readonly float[] _featureMean;
    private readonly float[] _featureScale;
    private readonly RunOptions _runOptions = new();
    private readonly bool _halfPrecision;
    private readonly bool _profiling;
    private readonly MapShape _mapShape;
    private int _current;

    public TrainStepSession(TrainableNetwork network, IReadOnlyList<HeadTap> taps, int classes, float momentum, float weightDecay,
        IReadOnlyDictionary<string, float[]> initial, bool halfPrecision, string? profilePrefix = null)
    {
        _names = TrainingGraphBuilder.ParameterNames(network);
        _halfPrecision = halfPrecision;
        _mapShape = network.InputShape;
        var trainGraph = TrainingGraphBuilder.Build(network, taps, classes, GraphKind.TrainStep, halfPrecision, momentum, weightDecay);
        var evaluateGraph = TrainingGraphBuilder.Build(network, taps, classes, GraphKind.Evaluate, halfPrecision);
        using (var options = CreateOptions())
        {
            if (profilePrefix is not null)
            {
                // The prefix must be set first: enabling profiling passes the prefix set at that moment to ONNX Runtime.
                options.ProfileOutputPathPrefix = profilePrefix;
                options.EnableProfiling = true;
                _profiling = true;
            }

            _train = new InferenceSession(trainGraph.ToByteArray(), options);
        }

        using (var options = CreateOptions())
        {
            _evaluate = new InferenceSession(evaluateGraph.ToByteArray(), options);
        }

        _shapes = _names.ToDictionary(n => n, n => Dims(trainGraph.Graph.Input.Single(i => i.Name == n)), StringComparer.Ordinal);
        var features = taps.Sum(t => t.Size);
        _featureMean = new float[features];
        _featureScale = [.. Enumerable.Repeat(1f, features)];
        _weights = [[.. _names.Select(n => (float[])initial[n].Clone())], [.. _names.Select(n => new float[initial[n].Length])]];
        _momenta = [[.. _names.Select(n => new float[initial[n].Length])], [.. _names.Select(n => new float[initial[n].Length])]];
        _bindings = [Bind(0), Bind(1)];
    }

    /// <summary>
    /// Sets the head's feature standardisation, (features - mean) * scale; until then it is the identity (mean 0,
    /// scale 1), which <see cref="Evaluate"/> uses to measure the raw features.
    /// </summary>
    public void Standardise(ReadOnlySpan<float> mean, ReadOnlySpan<float> scale)
    {
        mean.CopyTo(_featureMean);
        scale.CopyTo(_featureScale);
    }

    /// <summary>The current weights, by name (the live buffers: copy them to keep them).</summary>
    public IReadOnlyDictionary<string, float[]> Weights => Enumerable.Range(0, _names.Count).ToDictionary(i => _names[i], i => _weights[_current][i], StringComparer.Ordinal);

    /// <summary>The current momenta, by name (the live buffers).</summary>
    public IReadOnlyDictionary<string, float[]> Momenta => Enumerable.Range(0, _names.Count).ToDictionary(i => _names[i], i => _momenta[_current][i], StringComparer.Ordinal);

    /// <summary>Overwrites the current weights and momenta (resuming from a checkpoint, restoring the best epoch).</summary>
    public void Load(IReadOnlyDictionary<string, float[]> weights, IReadOnlyDictionary<string, float[]>? momenta)
    {
        for (var i = 0; i < _names.Count; i++)
        {
            weights[_names[i]].CopyTo(_weights[_current][i], 0);
            if (momenta is null)
            {
                Array.Clear(_momenta[_current][i]);
            }
            else
            {
                momenta[_names[i]].CopyTo(_momenta[_current][i], 0);
            }
        }
    }

    /// <summary>Images of the last <see cref="Step"/>'s batch the weights before the step classified right.</summary>
    public int LastCorrect => (int)_correct[0];

    /// <summary>One SGD step on <paramref name="count"/> maps; returns the batch's mean loss before the step.</summary>
    public float Step(Array maps, long[] labels, int count, float learningRate, float headLearningRate)
    {
        _learningRate[0] = learningRate;
        _headLearningRate[0] = headLearningRate;
        var binding = _bindings[_current];
        using var features = MapsValue(maps, count);
        using var labelValue = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, labels.AsMemory(0, count), [count]);
        binding.BindInput(TrainingGraphBuilder.Features, features);
        binding.BindInput(TrainingGraphBuilder.Labels, labelValue);
        _train.RunWithBinding(_runOptions, binding);
        _current = 1 - _current;
        return _loss[0];
    }

    /// <summary>Forward pass on <paramref name="count"/> maps: each image's loss, and the logits [count, classes].</summary>
    public (float[] Losses, float[] Logits, float[] Features) Evaluate(Array maps, long[] labels, int count)
    {
        using var features = MapsValue(maps, count);
        using var labelValue = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, labels.AsMemory(0, count), [count]);
        using var mean = OrtValue.CreateTensorValueFromMemory(_featureMean, [_featureMean.Length]);
        using var scale = OrtValue.CreateTensorValueFromMemory(_featureScale, [_featureScale.Length]);
        var inputNames = new List<string> { TrainingGraphBuilder.Features, TrainingGraphBuilder.Labels, TrainingGraphBuilder.FeatureMean, TrainingGraphBuilder.FeatureScale };
        var inputs = new List<OrtValue> { features, labelValue, mean, scale };
        var weightValues = new List<OrtValue>();
        try
        {
            for (var i = 0; i < _names.Count; i++)
            {
                var value = OrtValue.CreateTensorValueFromMemory(_weights[_current][i], _shapes[_names[i]]);
                weightValues.Add(value);
                inputNames.Add(_names[i]);
                inputs.Add(value);
            }

            using var outputs = _evaluate.Run(_runOptions, inputNames, inputs,
                [TrainingGraphBuilder.ImageLosses, TrainingGraphBuilder.Logits, TrainingGraphBuilder.HeadFeatures]);
            return (outputs[0].GetTensorDataAsSpan<float>().ToArray(), outputs[1].GetTensorDataAsSpan<float>().ToArray(), outputs[2].GetTensorDataAsSpan<float>().ToArray());
        }
        finally
        {
            weightValues.ForEach(v => v.Dispose());
        }
    }

    public void Dispose()
    {
        if (_profiling)
        {
            _train.EndProfiling();
        }

        foreach (var binding in _bindings)
        {
            binding.Dispose();
        }

        _values.ForEach(v => v.Dispose());
        _runOptions.Dispose();
        _train.Dispose();
        _evaluate.Dispose();
    }

    private static SessionOptions CreateOptions()
    {
        var options = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            IntraOpNumThreads = Environment.ProcessorCount,
            InterOpNumThreads = 1,
        };
        return options;
    }

    private static long[] Dims(ValueInfoProto value) => [.. value.Type.TensorType.Shape.Dim.Select(d => d.DimValue)];

    private OrtValue MapsValue(Array maps, int count)
    {
        long[] shape = [count, _mapShape.Height, _mapShape.Width, _mapShape.Channels];
        return _halfPrecision
            ? OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, ((Float16[])maps).AsMemory(0, count * _mapShape.Size), shape)
            : OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, ((float[])maps).AsMemory(0, count * _mapShape.Size), shape);
    }

    /// <summary>The binding that reads buffer set <paramref name="from"/> and writes the other.</summary>
    private OrtIoBinding Bind(int from)
    {
        var binding = _train.CreateIoBinding();
        OrtValue Value(float[] data, long[] shape)
        {
            var value = OrtValue.CreateTensorValueFromMemory(data, shape);
            _values.Add(value);
            return value;
        }

        binding.BindInput(TrainingGraphBuilder.LearningRate, Value(_learningRate, []));
        binding.BindInput(TrainingGraphBuilder.HeadLearningRate, Value(_headLearningRate, []));
        binding.BindOutput(TrainingGraphBuilder.Loss, Value(_loss, []));
        binding.BindOutput(TrainingGraphBuilder.Correct, Value(_correct, []));
        binding.BindInput(TrainingGraphBuilder.FeatureMean, Value(_featureMean, [_featureMean.Length]));
        binding.BindInput(TrainingGraphBuilder.FeatureScale, Value(_featureScale, [_featureScale.Length]));
        for (var i = 0; i < _names.Count; i++)
        {
            var name = _names[i];
            var shape = _shapes[name];
            var momentum = TrainingGraphBuilder.MomentumName(name);
            binding.BindInput(name, Value(_weights[from][i], shape));
            binding.BindInput(momentum, Value(_momenta[from][i], shape));
            binding.BindOutput(TrainingGraphBuilder.UpdatedName(name), Value(_weights[1 - from][i], shape));
            binding.BindOutput(TrainingGraphBuilder.UpdatedName(momentum), Value(_momenta[1 - from][i], shape));
        }

        return binding;
    }
}
