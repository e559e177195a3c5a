using System.Buffers.Binary;
using System.IO.Compression;
using Google.Protobuf;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.Transforms.Onnx;
using Onnx;
using static MlNetFinetune.Backbones.OnnxGraph;

namespace MlNetFinetune.Prediction;

/// <summary>
/// A saved model taken apart for prediction: the ML.NET steps before the backbone (resize, pixels), the backbone's own
/// ONNX graph (the bytes ML.NET stored in model.zip) and the ML.NET steps after it (head, key to label).
/// </summary>
/// <remarks>
/// ML.NET's row path runs the backbone through <see cref="OnnxTransformer"/>, which copies every tensor into and out
/// of <see cref="NamedOnnxValue"/>s on an untuned session; running the graph on a tuned <see cref="InferenceSession"/>
/// with bound buffers takes that overhead away (see the README's latency table). Loading the chain with ML.NET would
/// also parse the 64 MB graph into protobuf objects and create a second session only to throw both away, so the
/// chain is loaded from a copy of the zip whose backbone entry is a stub graph with the same input and output: the
/// steps around it load as saved, and nothing of the chain is rebuilt from code.
/// </remarks>
internal sealed class SavedChain
{
    /// <summary>The entry name ML.NET gives the model bytes of an <see cref="OnnxTransformer"/> (an int32 length, then the bytes).</summary>
    private const string OnnxEntryName = "OnnxModel";

    private SavedChain(ITransformer model, ITransformer? preprocess, byte[]? backbone, ITransformer? head)
    {
        Model = model;
        Preprocess = preprocess;
        Backbone = backbone;
        Head = head;
    }

    /// <summary>The whole chain as ML.NET loaded it; its backbone is a stub when <see cref="Backbone"/> is not null.</summary>
    public ITransformer Model { get; }

    /// <summary>The steps before the backbone (decoded image to pixels), or null when the chain is not split.</summary>
    public ITransformer? Preprocess { get; }

    /// <summary>The backbone's ONNX graph, or null when the chain is not split.</summary>
    public byte[]? Backbone { get; }

    /// <summary>The steps after the backbone (features to scores and label), or null when the chain is not split.</summary>
    public ITransformer? Head { get; }

    /// <summary>
    /// Loads the chain in <paramref name="zip"/>, split around its one ONNX step when it has exactly one and that step's
    /// graph has the input and output the manifest implies; otherwise the whole chain as ML.NET loads it
    /// (<see cref="Backbone"/> null). <paramref name="describeGraph"/> creates the backbone's session from the graph
    /// bytes and returns its input and output (null when the graph cannot run on its own); it is called at most once,
    /// on another thread: inflating and optimising the graph takes one core while ML.NET loads the chain on the other.
    /// </summary>
    public static SavedChain Load(MLContext ml, byte[] zip, NodeArg expectedInput, NodeArg expectedOutput, Func<byte[], (NodeArg Input, NodeArg Output)?> describeGraph)
    {
        if (FindOnnxEntry(zip) is not { } entryName)
        {
            return LoadWhole(ml, zip);
        }

        var backbone = Task.Run(() => ReadEntry(zip, entryName) is { } graph ? (Graph: graph, Arguments: describeGraph(graph)) : (null, null));
        ITransformer model;
        try
        {
            model = LoadModel(ml, ReplaceEntry(zip, entryName, Stub(expectedInput, expectedOutput)));
        }
        catch
        {
            // Let the session be created before failing, so that the caller can dispose it.
            backbone.ContinueWith(_ => { }, TaskScheduler.Default).Wait();
            throw;
        }

        (byte[]? Graph, (NodeArg Input, NodeArg Output)? Arguments) described;
        try
        {
            described = backbone.GetAwaiter().GetResult();
        }
        catch
        {
            (model as IDisposable)?.Dispose();
            throw;
        }

        var steps = Steps(model).ToList();
        if (described is not ({ } bytes, var (input, output)) || !input.Matches(expectedInput) || !output.Matches(expectedOutput)
            || steps.Count(step => step is OnnxTransformer) != 1)
        {
            (model as IDisposable)?.Dispose();
            return LoadWhole(ml, zip);
        }

        var onnx = steps.FindIndex(step => step is OnnxTransformer);
        var preprocess = new TransformerChain<ITransformer>([.. steps.Take(onnx)]);
        var head = new TransformerChain<ITransformer>([.. steps.Skip(onnx + 1)]);
        // The stub's session is not needed: the steps around it are kept on their own.
        ((IDisposable)steps[onnx]).Dispose();
        return new SavedChain(model, preprocess, bytes, head);
    }

    /// <summary>The whole chain as ML.NET loads it, not split.</summary>
    public static SavedChain LoadWhole(MLContext ml, byte[] zip) => new(LoadModel(ml, zip), null, null, null);

    /// <summary>An input or output of the backbone graph: its name and fixed dimensions.</summary>
    public sealed record NodeArg(string Name, long[] Dimensions)
    {
        /// <summary>True when <paramref name="other"/> has the same name and dimensions.</summary>
        public bool Matches(NodeArg other) => Name == other.Name && Dimensions.AsSpan().SequenceEqual(other.Dimensions);

        /// <summary>The number of values in one tensor of this shape.</summary>
        public long Length => Dimensions.Aggregate(1L, (product, d) => product * d);

        /// <summary>A session's only input or output, or null unless it is one float tensor of fixed shape.</summary>
        public static NodeArg? From(IReadOnlyDictionary<string, NodeMetadata> metadata) =>
            metadata.Count == 1 && metadata.Single() is { Value: { ElementDataType: Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float, Dimensions: var dims } } one && dims.All(d => d > 0)
                ? new NodeArg(one.Key, [.. dims.Select(d => (long)d)])
                : null;
    }

    private static ITransformer LoadModel(MLContext ml, byte[] zip)
    {
        using var stream = new MemoryStream(zip, writable: false);
        return ml.Model.Load(stream, out _);
    }

    /// <summary>The leaves of nested transformer chains, in order.</summary>
    private static IEnumerable<ITransformer> Steps(ITransformer transformer) =>
        transformer is IEnumerable<ITransformer> chain ? chain.SelectMany(Steps) : [transformer];

    /// <summary>The name of the zip's only ONNX entry, or null when there is not exactly one.</summary>
    private static string? FindOnnxEntry(byte[] zip)
    {
        using var archive = new ZipArchive(new MemoryStream(zip, writable: false), ZipArchiveMode.Read);
        var entries = archive.Entries.Where(e => e.Name == OnnxEntryName).ToList();
        return entries.Count == 1 && entries[0].Length is >= 4 and <= (long)int.MaxValue + 4 ? entries[0].FullName : null;
    }

    /// <summary>The graph bytes of the entry <paramref name="entryName"/> (an int32 length, then the bytes), or null when the length does not match.</summary>
    private static byte[]? ReadEntry(byte[] zip, string entryName)
    {
        using var archive = new ZipArchive(new MemoryStream(zip, writable: false), ZipArchiveMode.Read);
        var entry = archive.GetEntry(entryName)!;
        using var stream = entry.Open();
        var prefix = new byte[4];
        stream.ReadExactly(prefix);
        var length = BinaryPrimitives.ReadInt32LittleEndian(prefix);
        if (length != entry.Length - 4)
        {
            return null;
        }

        var graph = new byte[length];
        stream.ReadExactly(graph);
        return graph;
    }

    /// <summary>A copy of <paramref name="zip"/> with the entry <paramref name="entryName"/> holding <paramref name="graph"/> instead.</summary>
    private static byte[] ReplaceEntry(byte[] zip, string entryName, byte[] graph)
    {
        using var copy = new MemoryStream();
        using (var source = new ZipArchive(new MemoryStream(zip, writable: false), ZipArchiveMode.Read))
        using (var target = new ZipArchive(copy, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var entry in source.Entries)
            {
                using var to = target.CreateEntry(entry.FullName, CompressionLevel.Fastest).Open();
                if (entry.FullName == entryName)
                {
                    var prefix = new byte[4];
                    BinaryPrimitives.WriteInt32LittleEndian(prefix, graph.Length);
                    to.Write(prefix);
                    to.Write(graph);
                }
                else
                {
                    using var from = entry.Open();
                    from.CopyTo(to);
                }
            }
        }

        return copy.ToArray();
    }

    /// <summary>A graph with the backbone's input and output that outputs zeros: ML.NET reads the column types from it.</summary>
    private static byte[] Stub(NodeArg input, NodeArg output)
    {
        var graph = new GraphProto { Name = "mlnetfinetune_backbone_stub" };
        graph.Input.Add(TensorValue(input.Name, FloatType, [.. input.Dimensions.Select(Dim)]));
        graph.Output.Add(TensorValue(output.Name, FloatType, [.. output.Dimensions.Select(Dim)]));
        graph.Initializer.Add(FloatTensor("mlnetfinetune_zeros", output.Dimensions, new float[output.Length]));
        graph.Node.Add(Node("Identity", ["mlnetfinetune_zeros"], [output.Name]));
        var model = new ModelProto { IrVersion = 7, ProducerName = "MlNetFinetune", Graph = graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 13 });
        return model.ToByteArray();
    }
}
