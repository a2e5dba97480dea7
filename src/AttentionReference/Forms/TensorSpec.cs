using System.Globalization;
using AttentionReference.Tensors;

namespace AttentionReference.Forms;

/// <summary>
/// A named tensor of a form, written once: its canonical name (flash-attn / fla), its symbolic shape in the [B,T,H,...]
/// layout ("B,Tq,Hq,K"), what it is, whether it may be left out, the other names engines give it, whether it holds
/// indices rather than floats, and whether it may be a bool tensor (a mask or layout: bool, or 0/1 integers, or floats
/// where the form gives floats a meaning). The binding (<see cref="FormContract.Bind"/>) checks every input against its
/// spec and allocates every output from its spec, so a form states its shapes nowhere else.
/// </summary>
/// <param name="Name">The canonical name.</param>
/// <param name="Shape">
/// Symbols separated by commas, e.g. "B,T,H,K"; a number requires that extent. Alternatives of different ranks are
/// separated by " | " ("B,T,HV | B,T,HV,V": a headwise or a per-value beta); the tensor's rank picks one.
/// </param>
/// <param name="Description">What the tensor is, for <c>attnref forms</c>.</param>
/// <param name="Optional">Whether the tensor may be left out.</param>
/// <param name="Aliases">Other names engines give it (fla's <c>g</c> for gla's key gate).</param>
/// <param name="HoldsIndices">Integers (i32/i64), not floats.</param>
/// <param name="AcceptsBool">A mask: bool, 0/1 integers, or floats the form gives a meaning.</param>
/// <param name="Varlen">
/// For <c>cu_seqlens</c>-like tensors: the time symbol whose axis it cuts into sequences ("T"); its shape is then the
/// sequence count plus one ("N+1"), and the batch size must be 1.
/// </param>
/// <param name="Broadcast">
/// The shape is the largest the tensor may have: it may have fewer axes (aligned to the right) and any axis may be 1, as
/// PyTorch broadcasts SDPA's <c>attn_mask</c>.
/// </param>
public sealed record TensorSpec(
    string Name,
    string Shape,
    string Description,
    bool Optional = false,
    IReadOnlyList<string>? Aliases = null,
    bool HoldsIndices = false,
    bool AcceptsBool = false,
    string? Varlen = null,
    bool Broadcast = false)
{
    /// <summary>The alternative symbolic shapes, each split into its symbols.</summary>
    public IReadOnlyList<string[]> Alternatives { get; } = Shape.Split('|')
        .Select(s => s.Trim().Length == 0 ? [] : s.Split(',', StringSplitOptions.TrimEntries))
        .ToArray();

    /// <summary>"[B,Tq,Hq,K]", or "[B,T,HV] or [B,T,HV,V]".</summary>
    public string ShapeText => string.Join(" or ", Alternatives.Select(a => "[" + string.Join(",", a) + "]"));

    /// <summary>
    /// Whether the tensor has a time axis after the batch axis, and so is transposed when the user's layout is
    /// [B,H,T,...] (the first shape's second symbol starts with T).
    /// </summary>
    public bool HasTimeAxis => Alternatives[0] is { Length: >= 3 } symbols && symbols[1].StartsWith('T');

    /// <summary>
    /// The tensor named by the spec or one of its aliases in <paramref name="tensors"/>, dtype-checked (floats; integers
    /// for indices; for a mask also bool, or integers that are all 0 or 1); null when optional and absent.
    /// </summary>
    public Tensor? Resolve(IReadOnlyDictionary<string, Tensor> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        string[] names = [Name, .. Aliases ?? []];
        string[] present = names.Where(tensors.ContainsKey).ToArray();
        if (present.Length > 1)
        {
            throw new InputException($"given twice, as {string.Join(" and ", present.Select(n => $"'{n}'"))}", tensor: Name);
        }
        if (present.Length == 0)
        {
            return Optional ? null : throw new InputException($"missing (expected shape {ShapeText})", tensor: Name);
        }
        Tensor tensor = tensors[present[0]];
        if (tensor.DType == DType.Bool && !AcceptsBool)
        {
            throw new InputException($"expected {(HoldsIndices ? "an integer" : "a float")} tensor, found bool", tensor: Name);
        }
        if (AcceptsBool)
        {
            // bool, integer 0/1 or (where the form allows it) float: the form reads each kind; an integer mask holds
            // 0 and 1 only, as a bool tensor would.
            if (tensor.DType is DType.I32 or DType.I64 && tensor.Data.Any(x => x is not (0 or 1)))
            {
                throw new InputException(string.Create(CultureInfo.InvariantCulture,
                    $"an integer mask holds 0 (drop) or 1 (keep) only, found {tensor.Data.First(x => x is not (0 or 1))}"), tensor: Name);
            }
            return tensor;
        }
        return HoldsIndices ? Dims.RequireInteger(Name, tensor) : Dims.RequireFloat(Name, tensor);
    }

    /// <summary>Whether the tensor has a gradient: a float input, not indices, a mask or sequence boundaries.</summary>
    public bool Differentiable => !HoldsIndices && !AcceptsBool && Varlen is null;

    /// <summary>The symbols of the alternative of rank <paramref name="rank"/>, or null when none has it.</summary>
    public string[]? ShapeOfRank(int rank) => Alternatives.FirstOrDefault(a => a.Length == rank);
}
