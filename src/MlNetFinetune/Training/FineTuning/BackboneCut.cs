using Google.Protobuf;
using MlNetFinetune.Backbones;
using Onnx;
using static MlNetFinetune.Backbones.OnnxGraph;

namespace MlNetFinetune.Training.FineTuning;

/// <summary>
/// Where the pretrained ResNet18 is cut for fine-tuning the top <c>k</c> of its 4 stages: the frozen lower part (the
/// preprocessing, the stem and stages 1..4-k), run once per image into the cache, and the trainable part above it.
/// The trainable part is read from the network as given (convolutions and their frozen batch norms); the frozen part
/// and the result are the batch-norm folded network, whose tensor names are those of
/// <see cref="ResNet18Backbone.LoadNetwork"/> after <see cref="BatchNormFolding"/>.
/// </summary>
internal sealed class BackboneCut
{
    /// <summary>Output of the frozen graph: the cut activation as NHWC float16.</summary>
    public const string FrozenOutput = "frozen_map";

    private BackboneCut(ModelProto network, ModelProto folded, BackboneOptions backbone, int trainedStages, string cutTensor, MapShape cutShape, IReadOnlyList<HeadTap> taps)
    {
        Folded = folded;
        Backbone = backbone;
        TrainedStages = trainedStages;
        CutTensor = cutTensor;
        Taps = taps;
        Network = TrainableNetwork.Extract(network.Graph, cutTensor, cutShape, [.. taps.Select(t => t.Tensor).Where(t => t != cutTensor).Distinct()]);
    }

    /// <summary>The network with its batch norms folded: the frozen part runs it, and the result is written into it.</summary>

    public ModelProto Folded { get; }

    public BackboneOptions Backbone { get; }

    public int TrainedStages { get; }

    public string CutTensor { get; }

    public IReadOnlyList<HeadTap> Taps { get; }

    public TrainableNetwork Network { get; }

    public MapShape CutShape => Network.InputShape;

    /// <summary>
    /// Cuts <paramref name="network"/> (null: the pretrained one) below its top <paramref name="trainedStages"/> stages;
    /// the head reads <paramref name="backbone"/>'s taps. A tap below the cut is a user error: it would have to be cached too.
    /// </summary>
    public static BackboneCut Create(BackboneOptions backbone, int trainedStages, ModelProto? network = null)
    {
        var original = network ?? ResNet18Backbone.LoadNetwork();
        var folded = original.Clone();
        BatchNormFolding.Fold(folded.Graph);
        var stageOutputs = ResNet18Backbone.StageOutputs;
        var firstTrained = 5 - trainedStages;

        // The input of stage 1 is the stem's max pool; the input of stage s > 1 is the end of stage s - 1.
        var cut = firstTrained == 1 ? folded.Graph.Node.Single(n => n.OpType == "MaxPool").Output[0] : stageOutputs[firstTrained - 2];
        var cutSide = backbone.ImageSize / (4 << Math.Max(0, firstTrained - 2));
        var cutShape = new MapShape(cutSide, cutSide, firstTrained == 1 ? 64 : BackboneOptions.StageChannels[firstTrained - 2]);
        var taps = new List<HeadTap>();
        foreach (var tap in backbone.ParseTaps())
        {
            if (tap.Stage < firstTrained - 1)
            {
                throw new UserInputException(
                    $"--features: tap {tap} lies below the frozen part when fine-tuning {trainedStages} stage(s); train more stages (--fine-tune-stages {5 - tap.Stage}) or drop it");
            }

            var side = backbone.StageSide(tap.Stage);
            taps.Add(new HeadTap(stageOutputs[tap.Stage - 1], tap.Grid, new MapShape(side, side, BackboneOptions.StageChannels[tap.Stage - 1])));
        }

        return new BackboneCut(original, folded, backbone, trainedStages, cut, cutShape, taps);
    }

    /// <summary>
    /// The frozen graph: pixels [N,3,S,S] planar RGB 0..255 (as the feature graph takes them) to the cut activation,
    /// NHWC [N,H,W,C], float16 unless <paramref name="fullPrecision"/>. Float16 halves the cache (60,000 images at
    /// 64 px with two stages trained: 0.98 GB instead of 1.97 GB).
    /// </summary>
    public byte[] FrozenGraph(bool fullPrecision = false)
    {
        var model = ModelProto.Parser.ParseFrom(ResNet18Backbone.BuildGraph(Backbone, batchSize: null, Folded));
        var graph = model.Graph;
        graph.Output.Clear();
        var nhwc = CutTensor + "_nhwc";
        graph.Node.Add(Node("Transpose", [CutTensor], [nhwc], IntsAttribute("perm", 0, 2, 3, 1)));
        var type = fullPrecision ? FloatType : (int)TensorProto.Types.DataType.Float16;
        graph.Node.Add(Node("Cast", [nhwc], [FrozenOutput], IntAttribute("to", type)));
        graph.Output.Add(TensorValue(FrozenOutput, type,
            Dim("batch"), Dim(CutShape.Height), Dim(CutShape.Width), Dim(CutShape.Channels)));
        PruneUnused(graph);
        return model.ToByteArray();
    }

    /// <summary>
    /// The folded network with <paramref name="parameters"/> (training-graph layout, by name) written into its
    /// convolutions, each weight times its batch norm's scale: same tensor names as the folded pretrained network, so
    /// <see cref="ResNet18Backbone.BuildGraph(BackboneOptions, int?, ModelProto?)"/> takes it.
    /// </summary>
    public ModelProto Export(IReadOnlyDictionary<string, float[]> parameters)
    {
        var model = Folded.Clone();
        foreach (var conv in Network.Convs)
        {
            var weight = TrainableNetwork.FromWeightMatrix(conv, parameters[conv.WeightName]);
            if (conv.Scale is not null)
            {
                var perChannel = weight.Length / conv.Scale.Length;
                for (var i = 0; i < weight.Length; i++)
                {
                    weight[i] *= conv.Scale[i / perChannel];
                }
            }

            SetFloatValues(model.Graph, conv.FoldedWeightName, weight);
            SetFloatValues(model.Graph, conv.BiasName, parameters[conv.BiasName]);
        }

        return model;
    }
}
