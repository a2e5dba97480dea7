using System.Diagnostics.CodeAnalysis;
using AttentionReference.Tensors;

namespace AttentionReference.Compare;

/// <summary>
/// How far a candidate may be from the exact reference and why. Two criteria, both must hold:
/// <list type="bullet">
/// <item>normwise: ‖c − r‖₂ / ‖r‖₂ ≤ <see cref="NormwiseRelative"/> over the tensor;</item>
/// <item>per element: |c − r| ≤ <see cref="ElementRelative"/> · (|r| + rms(r)), with rms(r) the root-mean-square of the
/// finite reference values. The rms term is an absolute floor at the tensor's scale: a kernel's error on a near-zero
/// output is proportional to the magnitudes it was computed from, not to the output itself.</item>
/// </list>
/// and no NaN/Inf mismatch, ever. <see cref="ElementRelative"/> is 5 × <see cref="NormwiseRelative"/> in every
/// built-in profile: the normwise error is an RMS of the element errors over the tensor (relative to the tensor's
/// rms), and the largest of N ≈ 1e6 roughly Gaussian errors of standard deviation σ is about σ·√(2 ln N) ≈ 5.3σ;
/// measured against |r| + rms(r) ≥ rms(r), an element honestly at the tail of a passing tensor's error distribution
/// stays within 5× the normwise budget, while a single wrong element, invisible in the norm of a large tensor, does not.
/// </summary>
/// <param name="Name">The profile's name on the command line: f64, f32, tf32, f16, bf16.</param>
/// <param name="NormwiseRelative">Bound on ‖c − r‖₂ / ‖r‖₂.</param>
/// <param name="ElementRelative">Bound on |c − r| / (|r| + rms(r)) for each element.</param>
/// <param name="Reason">Why these numbers: printed with the report so a reader can judge them.</param>
public sealed record ToleranceProfile(string Name, double NormwiseRelative, double ElementRelative, string Reason)
{
    /// <summary>How much looser the per-element bound is than the normwise one (see the type's summary).</summary>
    public const double ElementFactor = 5;

    private const string ElementReason =
        " Per element 5x that, against |r| + rms(r): the largest of ~1e6 Gaussian errors is ~sqrt(2 ln 1e6) = 5.3 times their rms.";

    /// <summary>A candidate computed in double: 1e-12 on ‖c − r‖/‖r‖.</summary>
    // Unit roundoff u = 2^-53 ≈ 1.1e-16. A double kernel differs from the reference only in summation order and in its
    // exp/log (1-2 ulps each). The worst-case bound of a reduction of length n is n·u, ≈ 1.1e-12 at n ≈ 1e4 (a long
    // sequence, or a product of 1e4 gates); typical errors grow like sqrt(n)·u ≈ 1e-14. 1e-12 ≈ 9000u admits the
    // worst case at n ≈ 1e4 and is still far below anything a float32 shortcut would produce (≥ 6e-8).
    public static ToleranceProfile F64 { get; } = new("f64", 1e-12, ElementFactor * 1e-12,
        "f64 unit roundoff u = 2^-53 = 1.1e-16; a double kernel differs only in summation order and exp/log ulps; the worst-case "
        + "error of a length-n reduction is n*u = 1.1e-12 at n = 1e4 (typical sqrt(n)*u = 1e-14), so 1e-12 = ~9000u admits it "
        + "and still catches any float32 shortcut (>= 6e-8)." + ElementReason);

    /// <summary>A candidate computed and stored in float32: 1e-5.</summary>
    // u = 2^-24 ≈ 6.0e-8. The worst-case n·u at n ≈ 1e4 is 6e-4, too loose to catch bugs; rounding errors of long sums
    // behave like a random walk (Higham & Mary 2019, probabilistic error bounds ∝ sqrt(n)·u), sqrt(1e4)·u ≈ 6e-6, plus a
    // few u for exp, the division by the softmax denominator and the output's own rounding: 1e-5 ≈ 170u.
    public static ToleranceProfile F32 { get; } = new("f32", 1e-5, ElementFactor * 1e-5,
        "f32 unit roundoff u = 2^-24 = 6.0e-8; long sums err like a random walk, sqrt(n)*u = 6e-6 at n = 1e4 (the worst case n*u "
        + "= 6e-4 would hide bugs), plus a few u for exp, the softmax division and the output rounding: 1e-5 = ~170u."
        + ElementReason);

    /// <summary>A float32 candidate whose matrix products ran on TF32 tensor cores: 1e-3.</summary>
    // TF32 keeps a 10-bit fraction: u = 2^-11 ≈ 4.9e-4, for the operands of every matmul, accumulated in f32. Each
    // product q·k and p·v has two rounded operands (relative error up to 2u per term); in a sum of many terms of random
    // sign the errors partly cancel, leaving about u to 2u on the scores (order 1 after the K^-0.5 scale, so the
    // relative error of exp(score) is about the same) and again on the output: 1e-3 ≈ 2u.
    public static ToleranceProfile Tf32 { get; } = new("tf32", 1e-3, ElementFactor * 1e-3,
        "TF32 rounds matmul operands to a 10-bit fraction, unit roundoff u = 2^-11 = 4.9e-4, accumulating in f32; two rounded operands per "
        + "product give up to 2u per term, partly cancelling in the sums, on the scores (order 1, so exp's relative error is "
        + "similar) and on the output: 1e-3 = ~2u." + ElementReason);

    /// <summary>A float16 kernel accumulating in float32 (as flash-attn does): 5e-3.</summary>
    // u = 2^-11 ≈ 4.9e-4, the same as TF32. The inputs are exact (the reference reads the same f16 values), but the
    // kernel rounds intermediates to f16 in sequence: the probabilities P before P·V (≈ u on the output), the output
    // itself (≤ u/2), and in the backward pass dP, dS = P∘(dP − D) (a subtraction that amplifies relative error) and
    // chunked linear-attention states kept in half between chunks. Accumulation is in f32, so the sums add little.
    // Several f16 roundings in a row with room for the backward pass: 5e-3 ≈ 10u.
    public static ToleranceProfile F16 { get; } = new("f16", 5e-3, ElementFactor * 5e-3,
        "f16 unit roundoff u = 2^-11 = 4.9e-4 with f32 accumulation (flash-attn); the kernel rounds intermediates to f16 in "
        + "sequence: P before P*V (~u), the output (<= u/2), dP and dS = P*(dP - D) in the backward pass (the subtraction "
        + "amplifies relative error), chunk states kept in half: 5e-3 = ~10u." + ElementReason);

    /// <summary>A bfloat16 kernel accumulating in float32: 2e-2.</summary>
    // u = 2^-8 ≈ 3.9e-3, eight times coarser than f16, with the same sequence of intermediate roundings (P, the output,
    // the backward pass's dP and dS, chunk states). 2e-2 ≈ 5u: fewer units of u than the f16 profile gives, which covers
    // two or three bf16 roundings in sequence; long-sequence backward gradients are the ones that come nearest to it.
    public static ToleranceProfile BF16 { get; } = new("bf16", 2e-2, ElementFactor * 2e-2,
        "bf16 unit roundoff u = 2^-8 = 3.9e-3 with f32 accumulation; the same intermediate roundings as f16 (P, the output, "
        + "dP and dS, chunk states) at 8x the size: 2e-2 = ~5u covers two or three in sequence; long-sequence backward "
        + "gradients come nearest to it." + ElementReason);

    /// <summary>The five built-in profiles, tightest first.</summary>
    public static IReadOnlyList<ToleranceProfile> All { get; } = [F64, F32, Tf32, F16, BF16];

    /// <summary>
    /// The default profile for a candidate of <paramref name="dtype"/>: f64, f32, f16, bf16 for the float types (tf32 is
    /// never a default: a TF32 kernel writes float32, so the user asks for it). Integer tensors (indices) get f64, the
    /// strictest: an index is either right or wrong.
    /// </summary>
    public static ToleranceProfile For(DType dtype) => dtype switch
    {
        DType.F64 or DType.I32 or DType.I64 or DType.Bool => F64,
        DType.F32 => F32,
        DType.F16 => F16,
        DType.BF16 => BF16,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>
    /// Parses a profile name: f64, f32, tf32, f16, bf16, case-insensitive, also the long dtype names (float64, double,
    /// float32, float, tensorfloat32, float16, half, bfloat16).
    /// </summary>
    public static bool TryParse(string? name, [NotNullWhen(true)] out ToleranceProfile? profile)
    {
        profile = name?.Trim().ToUpperInvariant() switch
        {
            "F64" or "FLOAT64" or "DOUBLE" => F64,
            "F32" or "FLOAT32" or "FLOAT" => F32,
            "TF32" or "TENSORFLOAT32" => Tf32,
            "F16" or "FLOAT16" or "HALF" => F16,
            "BF16" or "BFLOAT16" => BF16,
            _ => null,
        };
        return profile is not null;
    }
}
