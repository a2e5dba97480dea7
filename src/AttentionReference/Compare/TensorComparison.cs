using System.Globalization;
using AttentionReference.Tensors;

namespace AttentionReference.Compare;

/// <summary>
/// The comparison of one candidate tensor with its reference (made by <see cref="Comparer.Compare"/>). The error
/// metrics are taken over the positions where both values are finite; positions where both are the same non-finite
/// value (the same infinity, or NaN in both) match and are left out; every other position is a NaN/Inf mismatch.
/// </summary>
public sealed class TensorComparison
{
    /// <summary>The tensor's name ("o", "lse", "dq", ...).</summary>
    public required string Name { get; init; }

    /// <summary>The shape both tensors share.</summary>
    public required IReadOnlyList<int> Shape { get; init; }

    /// <summary>One name per axis ("b","t","h","d", or "i0","i1",... by default).</summary>
    public required IReadOnlyList<string> AxisNames { get; init; }

    /// <summary>The reference's dtype (f64 for a computed reference).</summary>
    public required DType ReferenceDType { get; init; }

    /// <summary>The candidate's dtype: the one ulps are counted in.</summary>
    public required DType CandidateDType { get; init; }

    /// <summary>The tolerances applied.</summary>
    public required ToleranceProfile Profile { get; init; }

    /// <summary>Number of elements.</summary>
    public required int ElementCount { get; init; }

    /// <summary>Number of positions where both values are finite: those the error metrics cover.</summary>
    public required int ComparedCount { get; init; }

    /// <summary>rms(r): the root-mean-square of the finite reference values (0 if there are none).</summary>
    public required double ReferenceRms { get; init; }

    /// <summary>max |c − r|.</summary>
    public required double MaxAbsoluteError { get; init; }

    /// <summary>
    /// max |c − r| / max(|r|, <see cref="RelativeErrorFloor"/>). The floor keeps near-zero reference values from
    /// turning tiny absolute errors into huge relative ones.
    /// </summary>
    public required double MaxRelativeError { get; init; }

    /// <summary>
    /// The relative error's floor: 1e-3 · rms(r) (at least the smallest positive double). When rms(r) = 0 (every finite
    /// reference value is zero) there is no scale to be relative to, and the relative error is reported equal to the
    /// absolute error; the floor is then 0.
    /// </summary>
    public required double RelativeErrorFloor { get; init; }

    /// <summary>‖c − r‖₂ / ‖r‖₂; when ‖r‖₂ = 0 it is ‖c − r‖₂ = ‖c‖₂ (absolute: there is no scale).</summary>
    public required double NormwiseRelativeError { get; init; }

    /// <summary>The largest distance in ulps of <see cref="CandidateDType"/> (see <see cref="UlpDistance"/>).</summary>
    public required double MaxUlps { get; init; }

    /// <summary>Elements with |c − r| &gt; ElementRelative · (|r| + rms(r)).</summary>
    public required int OverToleranceCount { get; init; }

    /// <summary>Positions where one value is NaN and the other not, or one is ±inf and the other differs.</summary>
    public required int NonFiniteMismatchCount { get; init; }

    /// <summary>Positions where both values are the same infinity, or both NaN (e.g. lse = −inf in a fully masked row).</summary>
    public required int MatchingNonFiniteCount { get; init; }

    /// <summary>The worst elements, NaN/Inf mismatches first, then by <see cref="ElementError.Tolerances"/>, largest first.</summary>
    public required IReadOnlyList<ElementError> Worst { get; init; }

    /// <summary>Within tolerance: normwise error within the profile, no element over tolerance, no NaN/Inf mismatch.</summary>
    public bool Passed =>
        NormwiseRelativeError <= Profile.NormwiseRelative && OverToleranceCount == 0 && NonFiniteMismatchCount == 0;

    /// <summary>One line: the metrics and the verdict.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{Name} {CandidateDType.ShortName()}{Tensor.FormatShape(Shape)}: max abs {MaxAbsoluteError:G3}, max rel {MaxRelativeError:G3}, "
        + $"|c-r|/|r| {NormwiseRelativeError:G3}, max ulps {MaxUlps:G6}, over tolerance {OverToleranceCount}, "
        + $"NaN/Inf mismatches {NonFiniteMismatchCount}: {(Passed ? "passed" : "FAILED")} ({Profile.Name})");
}
