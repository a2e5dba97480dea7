using System.Globalization;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Common;

/// <summary>
/// One independent sequence of a call: batch entry <see cref="Batch"/>, time steps [<see cref="Start"/>,
/// <see cref="Start"/> + <see cref="Length"/>), and the index of its <c>initial_state</c>/<c>final_state</c> row.
/// </summary>
public readonly record struct SequenceSlice(int Batch, int Start, int Length, int StateIndex);

/// <summary>Time steps [<see cref="Start"/>, <see cref="Start"/> + <see cref="Length"/>) of one time axis.</summary>
public readonly record struct StepRange(int Start, int Length);

/// <summary>
/// One independent sequence of a bound call: its batch entry, its index (the row of its <c>initial_state</c> and
/// <c>final_state</c>) and its steps on each time axis (softmax's queries on Tq and keys on Tk).
/// </summary>
public sealed class Sequence(int batch, int index, IReadOnlyDictionary<string, StepRange> steps)
{
    /// <summary>The batch entry (0 with <c>cu_seqlens</c>).</summary>
    public int Batch { get; } = batch;

    /// <summary>The sequence's index n: its row of the per-sequence tensors [N,...].</summary>
    public int Index { get; } = index;

    /// <summary>The sequence's steps on the axis of <paramref name="timeSymbol"/>.</summary>
    public StepRange Steps(string timeSymbol) => steps.TryGetValue(timeSymbol, out StepRange range)
        ? range
        : throw new InvalidOperationException($"no time axis {timeSymbol} in this call");
}

/// <summary>
/// How a call splits into independent sequences, as flash-attn and flash-linear-attention define it: without
/// <c>cu_seqlens</c>, each of the B batch entries is one sequence of length T and state row b; with
/// <c>cu_seqlens</c> (int32/int64 [N+1], B = 1), sequence n is time steps [cu[n], cu[n+1]) and state row n.
/// Every stateful form calls this one function, so varlen behaves the same everywhere.
/// </summary>
public static class Sequences
{
    /// <summary>The sequences of a call with <paramref name="batch"/> entries of <paramref name="time"/> steps.</summary>
    public static IReadOnlyList<SequenceSlice> Slices(int batch, int time, Tensor? cuSeqlens, string name = "cu_seqlens")
    {
        if (cuSeqlens is null)
        {
            return Enumerable.Range(0, batch).Select(b => new SequenceSlice(b, 0, time, b)).ToArray();
        }
        Dims.RequireInteger(name, cuSeqlens);
        if (cuSeqlens.Rank != 1 || cuSeqlens.Length < 1)
        {
            throw new InputException($"expected shape [N+1] with N ≥ 0, found {cuSeqlens.ShapeString}", tensor: name);
        }
        if (batch != 1)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"with cu_seqlens the batch size must be 1 (sequences are packed along T), found B = {batch}"), tensor: name);
        }
        double[] cu = cuSeqlens.Data;
        if (cu[0] != 0 || cu[^1] != time)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"must start at 0 and end at T = {time}, found {cu[0]} … {cu[^1]}"), tensor: name);
        }
        var slices = new SequenceSlice[cu.Length - 1];
        for (int n = 0; n < slices.Length; n++)
        {
            if (cu[n + 1] < cu[n])
            {
                throw new InputException(string.Create(CultureInfo.InvariantCulture,
                    $"must be non-decreasing, found {cu[n]} then {cu[n + 1]} at positions {n} and {n + 1}"), tensor: name);
            }
            slices[n] = new SequenceSlice(0, (int)cu[n], (int)(cu[n + 1] - cu[n]), n);
        }
        return slices;
    }

    /// <summary>
    /// The sequences of a bound call: without varlen tensors, batch entry b is sequence b over every time axis; with
    /// them (all of the contract's or none), sequence n is the steps [cu[n], cu[n+1]) of each cut axis, B = 1.
    /// </summary>
    internal static IReadOnlyList<Sequence> Of(FormContract contract, Dims dims, IReadOnlyDictionary<string, Tensor> inputs)
    {
        int batch = dims.IsBound("B") ? dims["B"] : 1;
        string[] times = contract.TimeSymbols.Where(dims.IsBound).ToArray();
        TensorSpec[] varlen = contract.Inputs.Where(s => s.Varlen is not null).ToArray();
        TensorSpec[] given = varlen.Where(s => inputs.ContainsKey(s.Name)).ToArray();
        if (given.Length == 0)
        {
            return Enumerable.Range(0, batch).Select(b =>
                new Sequence(b, b, times.ToDictionary(t => t, t => new StepRange(0, dims[t]), StringComparer.Ordinal))).ToArray();
        }
        if (given.Length < varlen.Length)
        {
            TensorSpec missing = varlen.First(s => !inputs.ContainsKey(s.Name));
            throw new InputException($"varlen needs {string.Join(" and ", varlen.Select(s => s.Name))} together", tensor: missing.Name);
        }
        foreach (TensorSpec spec in given.Where(s => !dims.IsBound(s.Varlen!)))
        {
            throw new InputException($"cuts the time axis {spec.Varlen}, which no tensor of this call has", tensor: spec.Name);
        }
        var cuts = given.ToDictionary(s => s.Varlen!, s => Slices(batch, dims[s.Varlen!], inputs[s.Name], s.Name), StringComparer.Ordinal);
        int count = cuts.Values.First().Count;
        foreach (TensorSpec spec in given.Where(s => cuts[s.Varlen!].Count != count))
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"must hold as many sequences as {given[0].Name}: {count} + 1 entries, found {cuts[spec.Varlen!].Count + 1}"), tensor: spec.Name);
        }
        return Enumerable.Range(0, count).Select(n => new Sequence(0, n, times.ToDictionary(t => t,
            t => cuts.TryGetValue(t, out var slices) ? new StepRange(slices[n].Start, slices[n].Length) : new StepRange(0, dims[t]),
            StringComparer.Ordinal))).ToArray();
    }
}
