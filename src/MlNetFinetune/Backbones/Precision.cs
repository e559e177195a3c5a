namespace MlNetFinetune.Backbones;

/// <summary>The number format the backbone computes in.</summary>
public enum Precision
{
    /// <summary>32-bit floats: the pretrained network as it ships.</summary>
    Fp32,

    /// <summary>
    /// 8-bit integers: convolution weights per output channel, activations per tensor with ranges calibrated on a sample
    /// of the training images (<see cref="Quantization.Int8Backbone"/>). Runs on the CPU only.
    /// </summary>
    Int8,
}
