using MlNetFinetune.Training.FineTuning;

namespace MlNetFinetune.Tests.FineTuning;

/// <summary>
/// Loss and gradients of a train-step graph on a fixed batch: a step with learning rate 0, no weight decay and zero
/// momenta leaves the weights as they are and outputs the gradient as the new momentum (v = 0.9 * 0 + g).
/// </summary>
internal sealed class GradientProbe : IDisposable
{
    private readonly TrainableNetwork _network;
    private readonly int _classes;
    private readonly float[] _maps;
    private readonly long[] _labels;
    private readonly TrainStepSession _session;

    /// <param name="standardisation">Seeds a random head feature standardisation; null leaves it the identity.</param>
    public GradientProbe(TrainableNetwork network, IReadOnlyList<HeadTap> taps, int classes, float[] maps, long[] labels, int? standardisation = null)
    {
        _network = network;
        _classes = classes;
        _maps = maps;
        _labels = labels;
        _session = new(network, taps, classes, momentum: 0.9f, weightDecay: 0,
            TrainingGraphBuilder.ParameterNames(network).ToDictionary(n => n, n => new float[Size(network, taps, classes, n)]), halfPrecision: false);
        if (standardisation is int seed)
        {
            var random = new Random(seed);
            var features = taps.Sum(t => t.Size);
            _session.Standardise([.. Enumerable.Range(0, features).Select(_ => random.NextSingle())], [.. Enumerable.Range(0, features).Select(_ => 0.5f + random.NextSingle())]);
        }
    }

    public (double Loss, Dictionary<string, float[]> Gradients) LossAndGradients(IReadOnlyDictionary<string, float[]> weights)
    {
        _session.Load(weights, momenta: null);
        var loss = _session.Step(_maps, _labels, _labels.Length, 0, 0);
        return (loss, _session.Momenta.ToDictionary(m => m.Key, m => (float[])m.Value.Clone(), StringComparer.Ordinal));
    }

    public double Loss(IReadOnlyDictionary<string, float[]> weights)
    {
        _session.Load(weights, momenta: null);
        return _session.Step(_maps, _labels, _labels.Length, 0, 0);
    }

    /// <summary>g · d against (L(w + h d) - L(w - h d)) / 2h for a random d scaled to each tensor's root mean square.</summary>
    public (double Analytic, double Numeric) Directional(IReadOnlyDictionary<string, float[]> weights, IReadOnlyDictionary<string, float[]> gradients, int seed, double step)
    {
        var random = new Random(seed);
        var direction = weights.ToDictionary(w => w.Key, w =>
        {
            var scale = Math.Sqrt(w.Value.Average(v => (double)v * v)) + 1e-3;
            return w.Value.Select(_ => (float)(Gaussian(random) * scale)).ToArray();
        });
        var analytic = direction.Sum(d => d.Value.Select((v, i) => (double)v * gradients[d.Key][i]).Sum());
        var plus = Loss(Moved(weights, direction, step));
        var minus = Loss(Moved(weights, direction, -step));
        return (analytic, (plus - minus) / (2 * step));
    }

    /// <summary>The <paramref name="count"/> largest gradient coordinates of <paramref name="name"/> against central differences.</summary>
    public IEnumerable<(int Index, double Analytic, double Numeric)> Coordinates(IReadOnlyDictionary<string, float[]> weights, IReadOnlyDictionary<string, float[]> gradients, string name, int count, double step)
    {
        var gradient = gradients[name];
        var largest = new List<int>();
        for (var i = 0; i < gradient.Length; i++)
        {
            if (largest.Count < count || Math.Abs(gradient[i]) > Math.Abs(gradient[largest[^1]]))
            {
                largest.Add(i);
                largest.Sort((a, b) => Math.Abs(gradient[b]).CompareTo(Math.Abs(gradient[a])));
                if (largest.Count > count)
                {
                    largest.RemoveAt(count);
                }
            }
        }

        var moved = new Dictionary<string, float[]>(weights, StringComparer.Ordinal) { [name] = (float[])weights[name].Clone() };
        foreach (var index in largest)
        {
            var original = moved[name][index];
            moved[name][index] = (float)(original + step);
            var plus = Loss(moved);
            moved[name][index] = (float)(original - step);
            var minus = Loss(moved);
            moved[name][index] = original;
            yield return (index, gradient[index], (plus - minus) / (2 * step));
        }
    }

    /// <summary>
    /// The smallest |input| of any ReLU at <paramref name="weights"/>: a finite-difference step that moves no ReLU
    /// input by more than this crosses no kink. Read through the evaluation graph with every ReLU input as a tap
    /// pooled on a grid of single positions, i.e. the whole map.
    /// </summary>
    public double SmallestReluInput(IReadOnlyDictionary<string, float[]> weights)
    {
        var reluInputs = _network.Ops.OfType<ReluOp>().Select(r => new HeadTap(r.Input, _network.Shapes[r.Input].Height, _network.Shapes[r.Input])).ToList();
        var features = reluInputs.Sum(t => t.Size);
        var all = new Dictionary<string, float[]>(weights, StringComparer.Ordinal)
        {
            [TrainingGraphBuilder.HeadWeight] = new float[features * _classes],
            [TrainingGraphBuilder.HeadBias] = new float[_classes],
        };
        using var session = new TrainStepSession(_network, reluInputs, _classes, 0.9f, 0, all, halfPrecision: false);
        var (_, _, values) = session.Evaluate(_maps, _labels, _labels.Length);
        return values.Min(v => Math.Abs(v));
    }

    public void Dispose() => _session.Dispose();

    private static Dictionary<string, float[]> Moved(IReadOnlyDictionary<string, float[]> weights, IReadOnlyDictionary<string, float[]> direction, double step) =>
        weights.ToDictionary(w => w.Key, w => w.Value.Select((v, i) => (float)(v + (step * direction[w.Key][i]))).ToArray());

    private static double Gaussian(Random random) =>
        Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());

    private static int Size(TrainableNetwork network, IReadOnlyList<HeadTap> taps, int classes, string name)
    {
        var conv = network.Convs.FirstOrDefault(c => c.WeightName == name || c.BiasName == name);
        return conv is not null
            ? (conv.WeightName == name ? conv.WeightRows * conv.OutputShape.Channels : conv.OutputShape.Channels)
            : name == TrainingGraphBuilder.HeadWeight ? taps.Sum(t => t.Size) * classes : classes;
    }
}
