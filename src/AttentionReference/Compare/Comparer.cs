using System.Globalization;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using AttentionReference.Tensors;

namespace AttentionReference.Compare;

/// <summary>
/// Compares a candidate tensor (a kernel's output) with the exact reference and says where and by how much it is
/// wrong. Deterministic: the same tensors give the same comparison on one machine.
/// </summary>
public static class Comparer
{
    /// <summary>The relative error's floor as a fraction of rms(r) (see <see cref="TensorComparison.RelativeErrorFloor"/>).</summary>
    public const double RelativeFloorFraction = 1e-3;

    /// <summary>
    /// Compares <paramref name="candidate"/> with <paramref name="reference"/> under <paramref name="profile"/>.
    /// <list type="bullet">
    /// <item>Positions: both finite → measured; both the same infinity, or both NaN → a match, left out of the metrics;
    /// otherwise a NaN/Inf mismatch.</item>
    /// <item>rms(r) over the finite reference values; max |c − r|; max |c − r| / max(|r|, 1e-3·rms(r)) (reported as
    /// |c − r| when rms(r) = 0); ‖c − r‖₂ / ‖r‖₂ over the measured positions (‖c − r‖₂ when ‖r‖₂ = 0); max ulps in the
    /// candidate's dtype (<see cref="UlpDistance"/>); the count of elements with |c − r| &gt;
    /// ElementRelative·(|r| + rms(r)).</item>
    /// <item>The <paramref name="worstCount"/> worst elements: NaN/Inf mismatches first (in index order), then the
    /// others with a nonzero error by |c − r| / (ElementRelative·(|r| + rms(r))), largest first, ties in index order.</item>
    /// </list>
    /// </summary>
    /// <param name="name">The tensor's name, used in errors and element locations.</param>
    /// <param name="reference">The exact reference.</param>
    /// <param name="candidate">The kernel's output; its dtype is the one ulps are counted in.</param>
    /// <param name="profile">The tolerances.</param>
    /// <param name="axisNames">One name per axis (e.g. b,t,h,d); "i0","i1",... when null.</param>
    /// <param name="worstCount">How many worst elements to keep.</param>
    /// <exception cref="InputException">The shapes differ.</exception>
    public static TensorComparison Compare(
        string name, Tensor reference, Tensor candidate, ToleranceProfile profile,
        IReadOnlyList<string>? axisNames = null, int worstCount = 10)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(candidate);
        ArgumentNullException.ThrowIfNull(profile);
        ArgumentOutOfRangeException.ThrowIfNegative(worstCount);
        if (!reference.Shape.SequenceEqual(candidate.Shape))
        {
            throw new InputException(
                $"expected shape {reference.ShapeString} (the reference's), found {candidate.ShapeString}", tensor: name);
        }
        IReadOnlyList<string> axes = axisNames ?? DefaultAxisNames(reference.Rank);
        if (axes.Count != reference.Rank)
        {
            throw new ArgumentException($"{axes.Count} axis names for a tensor of rank {reference.Rank}", nameof(axisNames));
        }

        double[] r = reference.Data, c = candidate.Data;
        int n = r.Length;

        // 1. Classify the positions; gather the finite reference values, and the pairs where both are finite.
        var finiteReference = new double[n];
        var pairedReference = new double[n];
        var pairedDifference = new double[n];
        int finiteCount = 0, compared = 0, mismatches = 0, matching = 0;
        for (int i = 0; i < n; i++)
        {
            bool referenceFinite = double.IsFinite(r[i]), candidateFinite = double.IsFinite(c[i]);
            if (referenceFinite)
            {
                finiteReference[finiteCount++] = r[i];
            }
            if (referenceFinite && candidateFinite)
            {
                pairedReference[compared] = r[i];
                pairedDifference[compared] = c[i] - r[i];
                compared++;
            }
            else if (IsMatchingNonFinite(r[i], c[i]))
            {
                matching++;
            }
            else
            {
                mismatches++;
            }
        }

        // 2. The tensor's scale and the normwise error.
        double rms = finiteCount == 0 ? 0 : NormInPlace(finiteReference.AsSpan(0, finiteCount)) / Math.Sqrt(finiteCount);
        double referenceNorm = NormInPlace(pairedReference.AsSpan(0, compared));
        double differenceNorm = NormInPlace(pairedDifference.AsSpan(0, compared));
        double normwise = referenceNorm > 0 ? differenceNorm / referenceNorm : differenceNorm;
        double floor = rms > 0 ? Math.Max(RelativeFloorFraction * rms, double.Epsilon) : 0;

        // 3. Element by element: the maxima, the count over tolerance, and the worst elements.
        double maxAbsolute = 0, maxRelative = 0, maxUlps = 0;
        int overTolerance = 0;
        var worst = new PriorityQueue<int, Badness>(Badness.LeastBadFirst);
        for (int i = 0; i < n; i++)
        {
            Badness badness;
            if (double.IsFinite(r[i]) && double.IsFinite(c[i]))
            {
                double absolute = Math.Abs(c[i] - r[i]);
                maxAbsolute = Math.Max(maxAbsolute, absolute);
                maxRelative = Math.Max(maxRelative, Relative(absolute, r[i], floor));
                maxUlps = Math.Max(maxUlps, UlpDistance.Between(candidate.DType, r[i], c[i]));
                double tolerances = Tolerances(absolute, r[i], rms, profile);
                if (tolerances > 1)
                {
                    overTolerance++;
                }
                if (absolute == 0)
                {
                    continue; // exact: not worth listing
                }
                badness = new Badness(false, tolerances, i);
            }
            else if (!IsMatchingNonFinite(r[i], c[i]))
            {
                badness = new Badness(true, double.PositiveInfinity, i);
            }
            else
            {
                continue;
            }
            if (worst.Count < worstCount)
            {
                worst.Enqueue(i, badness);
            }
            else if (worstCount > 0 && worst.TryPeek(out _, out Badness leastBad) && Badness.LeastBadFirst.Compare(badness, leastBad) > 0)
            {
                worst.DequeueEnqueue(i, badness);
            }
        }

        // 4. The worst elements, worst first.
        var worstOffsets = new List<(int Offset, Badness Badness)>(worst.Count);
        while (worst.TryDequeue(out int offset, out Badness badness))
        {
            worstOffsets.Add((offset, badness));
        }
        worstOffsets.Reverse();
        var worstElements = worstOffsets.Select(w =>
        {
            int[] index = reference.IndexOf(w.Offset);
            double absolute = Math.Abs(c[w.Offset] - r[w.Offset]);
            return new ElementError(
                index, w.Offset, FormatIndex(name, axes, index), r[w.Offset], c[w.Offset], absolute,
                Relative(absolute, r[w.Offset], floor), UlpDistance.Between(candidate.DType, r[w.Offset], c[w.Offset]),
                w.Badness.Tolerances, w.Badness.Mismatch);
        }).ToArray();

        return new TensorComparison
        {
            Name = name,
            Shape = reference.ShapeArray(),
            AxisNames = axes.ToArray(),
            ReferenceDType = reference.DType,
            CandidateDType = candidate.DType,
            Profile = profile,
            ElementCount = n,
            ComparedCount = compared,
            ReferenceRms = rms,
            MaxAbsoluteError = maxAbsolute,
            MaxRelativeError = maxRelative,
            RelativeErrorFloor = floor,
            NormwiseRelativeError = normwise,
            MaxUlps = maxUlps,
            OverToleranceCount = overTolerance,
            NonFiniteMismatchCount = mismatches,
            MatchingNonFiniteCount = matching,
            Worst = worstElements,
        };
    }

    /// <summary>"o[b=0,t=5,h=1,d=3]"; a rank-0 tensor is just its name.</summary>
    public static string FormatIndex(string name, IReadOnlyList<string> axisNames, IReadOnlyList<int> index)
    {
        ArgumentNullException.ThrowIfNull(axisNames);
        ArgumentNullException.ThrowIfNull(index);
        if (axisNames.Count != index.Count)
        {
            throw new ArgumentException($"{axisNames.Count} axis names for an index of rank {index.Count}", nameof(axisNames));
        }
        return index.Count == 0
            ? name
            : name + "[" + string.Join(",", index.Select((value, axis) =>
                axisNames[axis] + "=" + value.ToString(CultureInfo.InvariantCulture))) + "]";
    }

    /// <summary>"i0", "i1", ... for a tensor of rank <paramref name="rank"/>.</summary>
    public static IReadOnlyList<string> DefaultAxisNames(int rank) =>
        Enumerable.Range(0, rank).Select(axis => "i" + axis.ToString(CultureInfo.InvariantCulture)).ToArray();

    /// <summary>Both the same infinity, or both NaN.</summary>
    private static bool IsMatchingNonFinite(double reference, double candidate) =>
        (double.IsNaN(reference) && double.IsNaN(candidate))
        || (double.IsInfinity(reference) && reference == candidate);

    private static double Relative(double absolute, double reference, double floor) =>
        floor > 0 ? absolute / Math.Max(Math.Abs(reference), floor) : absolute;

    /// <summary>|c − r| / (ElementRelative·(|r| + rms)); an error where the tolerance is 0 (r = rms = 0) is infinitely many.</summary>
    private static double Tolerances(double absolute, double reference, double rms, ToleranceProfile profile)
    {
        double tolerance = profile.ElementRelative * (Math.Abs(reference) + rms);
        double tolerances = tolerance > 0 ? absolute / tolerance : absolute > 0 ? double.PositiveInfinity : 0;
        return double.IsNaN(tolerances) ? double.PositiveInfinity : tolerances; // inf/inf: both overflowed
    }

    /// <summary>
    /// ‖x‖₂ without overflow or underflow: x is scaled in place by a power of two (exact) that brings its largest
    /// magnitude near 1, normed with <see cref="TensorPrimitives.Norm{T}(ReadOnlySpan{T})"/>, and scaled back.
    /// </summary>
    private static double NormInPlace(Span<double> x)
    {
        if (x.IsEmpty)
        {
            return 0;
        }
        double largest = Math.Abs(TensorPrimitives.MaxMagnitude<double>(x));
        if (largest == 0 || !double.IsFinite(largest))
        {
            return largest;
        }
        int exponent = Math.ILogB(largest);
        TensorPrimitives.ScaleB<double>(x, -exponent, x);
        return Math.ScaleB(TensorPrimitives.Norm<double>(x), exponent);
    }

    /// <summary>How bad an element is: a NaN/Inf mismatch above any finite error, then more tolerances off, then the earlier index.</summary>
    private readonly record struct Badness(bool Mismatch, double Tolerances, int Offset)
    {
        /// <summary>Orders the least bad first (the heap's top is the one to drop).</summary>
        public static System.Collections.Generic.Comparer<Badness> LeastBadFirst { get; } = System.Collections.Generic.Comparer<Badness>.Create((a, b) =>
            a.Mismatch != b.Mismatch ? (a.Mismatch ? 1 : -1)
            : a.Tolerances != b.Tolerances ? a.Tolerances.CompareTo(b.Tolerances)
            : b.Offset.CompareTo(a.Offset));
    }
}
