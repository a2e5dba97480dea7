namespace AttentionReference.Compare;

/// <summary>One element of a comparison, as listed among the worst: where it is and how far off.</summary>
/// <param name="Index">The full multi-index, outermost axis first.</param>
/// <param name="Offset">The row-major offset.</param>
/// <param name="Location">The index with the tensor's name and axis names: <c>o[b=0,t=5,h=1,d=3]</c>.</param>
/// <param name="Reference">The exact reference value.</param>
/// <param name="Candidate">The candidate's value.</param>
/// <param name="AbsoluteError">|c − r| (NaN or infinity for a NaN/Inf mismatch).</param>
/// <param name="RelativeError">|c − r| / max(|r|, floor), as <see cref="TensorComparison.MaxRelativeError"/> defines it.</param>
/// <param name="Ulps">Distance in the candidate's dtype (<see cref="UlpDistance"/>); NaN for a mismatch involving NaN.</param>
/// <param name="Tolerances">|c − r| / (ElementRelative · (|r| + rms(r))): how many element tolerances it is off;
/// above 1 is over tolerance; infinity for a NaN/Inf mismatch.</param>
/// <param name="NonFiniteMismatch">True where one value is NaN and the other not, or one is ±inf and the other differs.</param>
public sealed record ElementError(
    IReadOnlyList<int> Index,
    int Offset,
    string Location,
    double Reference,
    double Candidate,
    double AbsoluteError,
    double RelativeError,
    double Ulps,
    double Tolerances,
    bool NonFiniteMismatch);
