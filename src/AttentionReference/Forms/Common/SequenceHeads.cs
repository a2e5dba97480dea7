using AttentionReference.Tensors;

namespace AttentionReference.Forms.Common;

/// <summary>
/// The loop every stateful form shares: for every (sequence, head) pair, in parallel, slice the sequence
/// (<see cref="Sequences"/>), load the pair's rows of the initial-state tensors (zeros where a tensor is absent), run the
/// form's body on it, and store the o rows it wrote and the state rows it left as the final state. Pairs are
/// independent and each is computed start to end by one thread, so the result does not depend on the thread count.
/// </summary>
public static class SequenceHeads
{
    /// <summary>
    /// Runs <paramref name="body"/> once per (sequence, head) pair of a call whose output o is
    /// [<paramref name="batch"/>, <paramref name="time"/>, <paramref name="heads"/>, <paramref name="v"/>]; returns o
    /// (zero where no body wrote) and one final tensor [N, heads, …] per entry of <paramref name="states"/>.
    /// </summary>
    public static SequenceHeadsResult Run(IReadOnlyList<SequenceSlice> sequences, int batch, int time, int heads, int v,
        IReadOnlyList<StateTensor> states, Action<SequenceHead> body)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        ArgumentNullException.ThrowIfNull(states);
        ArgumentNullException.ThrowIfNull(body);
        var o = Tensor.Zeros(batch, time, heads, v);
        Tensor[] finals = states.Select(state => state.Final(sequences.Count, heads)).ToArray();
        Parallel.For(0, sequences.Count * heads, pair =>
        {
            SequenceSlice sequence = sequences[pair / heads];
            int h = pair % heads, row = sequence.StateIndex * heads + h;
            var rows = new double[states.Count][];
            for (int i = 0; i < rows.Length; i++)
            {
                rows[i] = states[i].InitialRow(row);
            }
            body(new SequenceHead(sequence, h, o, rows));
            for (int i = 0; i < rows.Length; i++)
            {
                rows[i].CopyTo(finals[i].Data, row * rows[i].Length);
            }
        });
        return new SequenceHeadsResult(o, finals);
    }
}

/// <summary>The outputs of <see cref="SequenceHeads.Run"/>: o [B,T,H,V] and the final tensors, in the order of the states.</summary>
public sealed record SequenceHeadsResult(Tensor O, IReadOnlyList<Tensor> FinalStates);

/// <summary>
/// One state tensor of a stateful form, [N,H,…]: the caller's initial value (null = zeros) and the shape of the row one
/// (sequence, head) pair owns: [K, V] for a state S, [K] for a normaliser, none for a scalar.
/// </summary>
public sealed class StateTensor(Tensor? initial, params int[] rowShape)
{
    private readonly int[] _rowShape = rowShape ?? throw new ArgumentNullException(nameof(rowShape));

    /// <summary>The number of values in one pair's row.</summary>
    public int RowSize => _rowShape.Aggregate(1, (size, d) => size * d);

    /// <summary>A zero tensor [N, H, …row shape] for the final values.</summary>
    internal Tensor Final(int n, int heads) => Tensor.Zeros([n, heads, .. _rowShape]);

    /// <summary>A copy of row <paramref name="row"/> (= n·H + h) of the initial tensor; zeros when it is absent.</summary>
    internal double[] InitialRow(int row)
    {
        int size = RowSize;
        return initial is null ? new double[size] : initial.Data.AsSpan(row * size, size).ToArray();
    }
}

/// <summary>
/// One (sequence, head) pair as a form's body sees it: the sequence, the head, the pair's state rows (the initial values
/// on entry; what the body leaves there is the final state), and its rows of o and of the inputs.
/// </summary>
public sealed class SequenceHead
{
    private readonly Tensor _o;
    private readonly double[][] _states;

    internal SequenceHead(SequenceSlice sequence, int h, Tensor o, double[][] states) =>
        (Sequence, H, _o, _states) = (sequence, h, o, states);

    /// <summary>The sequence: batch entry, first time step, length and state row.</summary>
    public SequenceSlice Sequence { get; }

    /// <summary>The head index h (of o and of the state tensors).</summary>
    public int H { get; }

    /// <summary>The number of time steps of the sequence.</summary>
    public int Length => Sequence.Length;

    /// <summary>The pair's row of state tensor <paramref name="index"/>, row-major (a [K,V] state: row a is [a·V, (a+1)·V)).</summary>
    public double[] State(int index = 0) => _states[index];

    /// <summary>o[b, start + t, h, :], the output row of step t of the sequence (0 ≤ t &lt; length), zero until written.</summary>
    public Span<double> O(int t)
    {
        int time = _o.Dim(1), heads = _o.Dim(2), v = _o.Dim(3);
        return _o.Data.AsSpan(((Sequence.Batch * time + Sequence.Start + t) * heads + H) * v, v);
    }

    /// <summary>The sequence's rows of o, in place: row t is <see cref="O"/>(t).</summary>
    public RowBlock OutputRows() => Rows(_o);

    /// <summary>
    /// The sequence's rows of head <paramref name="head"/> (default: this pair's) of a [B,T,heads,width] tensor, in place
    /// (no copy): row t = x[b, start + t, head, :].
    /// </summary>
    public RowBlock Rows(Tensor x, int? head = null)
    {
        ArgumentNullException.ThrowIfNull(x);
        int time = x.Dim(1), heads = x.Dim(2), width = x.Dim(3), h = head ?? H;
        return new RowBlock(x.Data, ((Sequence.Batch * time + Sequence.Start) * heads + h) * width, heads * width, Length, width);
    }

    /// <summary>Writes the sequence's output rows, packed step after step (length · V values).</summary>
    public void WriteO(ReadOnlySpan<double> rows)
    {
        int v = _o.Dim(3);
        for (int t = 0; t < Length; t++)
        {
            rows.Slice(t * v, v).CopyTo(O(t));
        }
    }

    /// <summary>
    /// The sequence's rows of head <paramref name="head"/> (default: this pair's) of a [B,T,heads,width] or [B,T,heads]
    /// tensor, packed step after step (length · width values).
    /// </summary>
    public double[] Gather(Tensor x, int? head = null)
    {
        ArgumentNullException.ThrowIfNull(x);
        int time = x.Dim(1), heads = x.Dim(2), width = x.Rank == 4 ? x.Dim(3) : 1, h = head ?? H;
        var rows = new double[Length * width];
        for (int t = 0; t < Length; t++)
        {
            x.Data.AsSpan(((Sequence.Batch * time + Sequence.Start + t) * heads + h) * width, width).CopyTo(rows.AsSpan(t * width, width));
        }
        return rows;
    }
}
