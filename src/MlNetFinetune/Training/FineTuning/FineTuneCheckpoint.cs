using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace MlNetFinetune.Training.FineTuning;

/// <summary>
/// Everything a fine-tuning run needs to continue after its last finished epoch: the weights and momenta (the
/// learning rate, shuffling and augmentation of later epochs depend only on the options and the epoch number), the
/// best epoch's weights, and the history. It names the options and the data it was made with; resuming with other
/// options or other images is refused. Written atomically after every epoch.
/// </summary>
internal sealed class FineTuneCheckpoint
{
    public const string FileName = "finetune-checkpoint.bin";

    private const string Magic = "MLNETFINETUNE-CHECKPOINT-2";

    /// <summary>A diverged epoch's loss is NaN, and a run without validation images has NaN validation scores.</summary>
    private static readonly JsonSerializerOptions s_json = new() { NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals };

    public required string Options { get; init; }

    public required string Data { get; init; }

    public required IReadOnlyList<FineTuneEpoch> History { get; init; }

    public required int BestEpoch { get; init; }

    /// <summary>Set when the run ended (completed or stopped early): resuming it returns the result without training.</summary>
    public required string? StopReason { get; init; }

    public required IReadOnlyDictionary<string, float[]> Weights { get; init; }

    public required IReadOnlyDictionary<string, float[]> Momenta { get; init; }

    public required IReadOnlyDictionary<string, float[]> BestWeights { get; init; }

    public void Save(string folder)
    {
        AtomicFile.Write(Path.Combine(folder, FileName), temporary =>
        {
            using var writer = new BinaryWriter(File.Create(temporary), Encoding.UTF8);
            writer.Write(Magic);
            writer.Write(Options);
            writer.Write(Data);
            writer.Write(BestEpoch);
            writer.Write(StopReason ?? "");
            writer.Write(JsonSerializer.Serialize(History, s_json));
            writer.Write(Weights.Count);
            foreach (var (name, weights) in Weights)
            {
                writer.Write(name);
                WriteFloats(writer, weights);
                WriteFloats(writer, Momenta[name]);
                WriteFloats(writer, BestWeights[name]);
            }
        });
    }

    /// <summary>The checkpoint in <paramref name="folder"/>, or null when there is none.</summary>
    public static FineTuneCheckpoint? Load(string folder)
    {
        var path = Path.Combine(folder, FileName);
        if (!File.Exists(path))
        {
            return null;
        }

        try
        {
            using var reader = new BinaryReader(File.OpenRead(path), Encoding.UTF8);
            if (reader.ReadString() != Magic)
            {
                throw new UserInputException($"{path}: not a fine-tuning checkpoint of this version");
            }

            var options = reader.ReadString();
            var data = reader.ReadString();
            var best = reader.ReadInt32();
            var stop = reader.ReadString();
            var history = JsonSerializer.Deserialize<List<FineTuneEpoch>>(reader.ReadString(), s_json) ?? [];
            var count = reader.ReadInt32();
            var weights = new Dictionary<string, float[]>(StringComparer.Ordinal);
            var momenta = new Dictionary<string, float[]>(StringComparer.Ordinal);
            var bestWeights = new Dictionary<string, float[]>(StringComparer.Ordinal);
            for (var i = 0; i < count; i++)
            {
                var name = reader.ReadString();
                weights[name] = ReadFloats(reader);
                momenta[name] = ReadFloats(reader);
                bestWeights[name] = ReadFloats(reader);
            }

            return new FineTuneCheckpoint
            {
                Options = options,
                Data = data,
                History = history,
                BestEpoch = best,
                StopReason = stop.Length == 0 ? null : stop,
                Weights = weights,
                Momenta = momenta,
                BestWeights = bestWeights,
            };
        }
        catch (Exception e) when (e is EndOfStreamException or JsonException or IOException)
        {
            throw new UserInputException($"{path}: unreadable fine-tuning checkpoint ({e.Message.Split('\n')[0]})");
        }
    }

    private static void WriteFloats(BinaryWriter writer, float[] values)
    {
        writer.Write(values.Length);
        writer.Write(MemoryMarshal.AsBytes(values.AsSpan()));
    }

    private static float[] ReadFloats(BinaryReader reader)
    {
        var values = new float[reader.ReadInt32()];
        reader.BaseStream.ReadExactly(MemoryMarshal.AsBytes(values.AsSpan()));
        return values;
    }
}
