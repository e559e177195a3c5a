using Microsoft.ML.OnnxRuntime;

namespace MlNetFinetune.Backbones;

/// <summary>ONNX Runtime session for the bulk (dynamic batch) backbone graph.</summary>
public static class BackboneSession
{
    /// <summary>
    /// Creates a session on the CPU, or on CUDA device <paramref name="gpuDevice"/> when asked and available.
    /// <paramref name="fallbackMessage"/> says why the GPU was not used, when it was asked for. With
    /// <paramref name="spinning"/> false, ONNX Runtime's idle CPU threads sleep instead of spinning: for bulk
    /// featurization, where decoding threads share the cores with the backbone's.
    /// </summary>
    public static InferenceSession Create(byte[] graph, int? gpuDevice, out string? fallbackMessage, bool spinning = true)
    {
        fallbackMessage = null;
        if (gpuDevice is int device)
        {
            try
            {
                using var gpuOptions = SessionOptions.MakeSessionOptionWithCudaProvider(device);
                gpuOptions.GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL;
                return new InferenceSession(graph, gpuOptions);
            }
            catch (Exception e) when (e is OnnxRuntimeException or DllNotFoundException or EntryPointNotFoundException)
            {
                fallbackMessage = $"GPU {device} not usable ({FirstLine(e.Message)}); running the backbone on the CPU";
            }
        }

        using var options = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            IntraOpNumThreads = Environment.ProcessorCount,
            InterOpNumThreads = 1,
        };
        if (!spinning)
        {
            options.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
        }

        return new InferenceSession(graph, options);
    }

    private static string FirstLine(string text) => text.Split('\n', 2)[0].Trim();
}
