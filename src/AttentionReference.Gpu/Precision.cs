namespace AttentionReference.Gpu;

/// <summary>The arithmetic of the kernels: every kernel is generic over its real type and runs in either.</summary>
public enum Precision
{
    /// <summary>double: held to the CPU reference within 1e-12.</summary>
    F64,
    /// <summary>float: inputs rounded to float once on upload, outputs widened on download; held to stated bounds.</summary>
    F32,
}
