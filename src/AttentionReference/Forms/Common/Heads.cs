using System.Collections.Concurrent;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Common;

/// <summary>
/// The one runner of every per-head form: for every (sequence, head) pair of a bound call, in parallel, run the form's
/// body on a <see cref="Head"/>, the pair's view of every tensor. Before the loop, every output of the contract is
/// allocated and each <c>final_X</c> starts as <c>initial_X</c> (zeros where it was left out), so a body that steps its
/// state in place leaves the final state behind. Pairs are independent and each is computed start to end by one
/// thread, so the result does not depend on the thread count.
/// </summary>
public static class Heads
{
    /// <summary>
    /// Runs <paramref name="body"/> once per (sequence, head) pair, the heads counted by <paramref name="headSymbol"/>
    /// (H; HV for the delta rule's value heads; D for mamba's channels), and returns the contract's outputs.
    /// </summary>
    public static IReadOnlyDictionary<string, Tensor> Run(Problem problem, Action<Head> body, string headSymbol = "H")
    {
        ArgumentNullException.ThrowIfNull(body);
        HeadViews views = Views(problem, headSymbol);
        int heads = problem[headSymbol];
        IReadOnlyList<Sequence> sequences = problem.Sequences;
        Parallel.For(0, sequences.Count * heads, pair =>
        {
            Head head = views.Pair(sequences[pair / heads], pair % heads);
            body(head);
            head.StoreStates();
        });
        return views.Outputs;
    }

    /// <summary>
    /// The contract's outputs, allocated as <see cref="Run"/> allocates them, and a <see cref="Head"/> for any pair: for
    /// an engine that schedules its own parallel work within and across pairs (FlashAttention's query blocks of all the
    /// heads that read one key/value head, which share its packed keys). Each task must still be computed start to end
    /// by one thread. Outputs only: a state is stored back by <see cref="Run"/>.
    /// </summary>
    public static HeadViews Views(Problem problem, string headSymbol = "H")
    {
        ArgumentNullException.ThrowIfNull(problem);
        var outputs = problem.Contract.Outputs.ToDictionary(s => s.Name, s => problem.NewOutput(s.Name), StringComparer.Ordinal);
        foreach (var (name, final) in outputs)
        {
            if (name.StartsWith("final_", StringComparison.Ordinal) && problem.Optional("initial_" + name["final_".Length..]) is { } initial)
            {
                initial.Data.CopyTo(final.Data, 0);
            }
        }
        return new HeadViews(new TensorViews(problem, headSymbol, outputs), outputs);
    }
}

/// <summary>The outputs of a bound call and a <see cref="Head"/> for each of its (sequence, head) pairs (<see cref="Heads.Views"/>).</summary>
public sealed class HeadViews
{
    private readonly TensorViews _views;

    internal HeadViews(TensorViews views, IReadOnlyDictionary<string, Tensor> outputs) => (_views, Outputs) = (views, outputs);

    /// <summary>The contract's outputs, written through the pairs' output rows.</summary>
    public IReadOnlyDictionary<string, Tensor> Outputs { get; }

    /// <summary>The pair (<paramref name="sequence"/>, <paramref name="head"/>).</summary>
    public Head Pair(Sequence sequence, int head) => new(_views, sequence, head);
}

/// <summary>
/// One (sequence, head) pair as a form's body sees it: the rows of every tensor of the call that belong to it, in place.
/// <c>Rows("q")[t]</c> is q_t, <c>Series("g")[t]</c> is g_t, <c>Row("u")</c> is a per-head parameter, <c>State()</c> is the
/// pair's state S (K rows of V values), <c>Rows("o")</c> the output rows. A tensor indexed by a grouped head symbol (q, k
/// of H heads read by HV value heads) gives the group's rows.
/// </summary>
public sealed class Head
{
    private readonly TensorViews _views;
    private readonly Dictionary<string, (RowBlock InPlace, RowBlock Aligned)> _states = new(StringComparer.Ordinal);

    internal Head(TensorViews views, Sequence sequence, int index)
    {
        (_views, Sequence, Index) = (views, sequence, index);
        T = sequence.Steps(views.Problem.Contract.TimeSymbols[0]).Length;
    }

    /// <summary>The sequence.</summary>
    public Sequence Sequence { get; }

    /// <summary>The head index h.</summary>
    public int Index { get; }

    /// <summary>The call.</summary>
    public Problem Problem => _views.Problem;

    /// <summary>The number of steps of the sequence on the form's first time axis.</summary>
    public int T { get; }

    /// <summary>The extent bound to <paramref name="symbol"/> ("K", "V").</summary>
    public int this[string symbol] => Problem[symbol];

    /// <summary>Row t is the tensor's row at step t of this pair (a view: writing to an output's rows writes the output).</summary>
    public RowBlock Rows(string name) => _views[name].Rows(Sequence, Index);

    /// <summary><see cref="Rows"/> of an optional input; null when it was left out.</summary>
    public RowBlock? OptionalRows(string name) => Problem.Has(name) ? Rows(name) : null;

    /// <summary>Value t is the tensor's value at step t of this pair: a tensor with one value per step ([B,T,H]).</summary>
    public Series Series(string name) => _views[name].Series(Sequence, Index);

    /// <summary><see cref="Series"/> of an optional input; null when it was left out.</summary>
    public Series? OptionalSeries(string name) => Problem.Has(name) ? Series(name) : null;

    /// <summary>The pair's values of a tensor without a time axis (u [H,K]: row h; A [D,N]: row d), packed.</summary>
    public Span<double> Row(string name) => _views[name].Row(Sequence, Index);

    /// <summary>The pair's value of a tensor with one value per head (gamma [H], D [H]).</summary>
    public double Scalar(string name) => Row(name)[0];

    /// <summary>
    /// The pair's state <c>final_</c><paramref name="name"/> in place, initialised from <c>initial_</c><paramref name="name"/>:
    /// [N,H,K,V] gives K rows of V values, [N,H,K] one row of K, [N,H] one value.
    /// </summary>
    public RowBlock State(string name = "state")
    {
        if (!_states.TryGetValue(name, out var state))
        {
            // The body steps a copy aligned to cache lines (RowBlock.AlignedZeros: a state's rows are swept at every
            // step, and unaligned rows cost up to 1.6x); the runner stores it back when the body returns.
            RowBlock inPlace = _views["final_" + name].StateRows(Sequence, Index);
            RowBlock aligned = RowBlock.AlignedZeros(inPlace.Count, inPlace.Width);
            for (int a = 0; a < inPlace.Count; a++)
            {
                inPlace[a].CopyTo(aligned[a]);
            }
            _states[name] = state = (inPlace, aligned);
        }
        return state.Aligned;
    }

    /// <summary>Writes the states the body stepped back into the final-state tensors.</summary>
    internal void StoreStates()
    {
        foreach (var (inPlace, aligned) in _states.Values)
        {
            for (int a = 0; a < inPlace.Count; a++)
            {
                aligned[a].CopyTo(inPlace[a]);
            }
        }
    }
}

/// <summary>Values x_t of one pair, one per step, in place with any stride.</summary>
public readonly struct Series
{
    private readonly double[] _data;
    private readonly int _offset, _stride;

    internal Series(double[] data, int offset, int stride, int length) => (_data, _offset, _stride, Length) = (data, offset, stride, length);

    /// <summary>The number of steps.</summary>
    public int Length { get; }

    /// <summary>The value at step <paramref name="t"/>.</summary>
    public double this[int t]
    {
        get => _data[_offset + t * _stride];
        set => _data[_offset + t * _stride] = value;
    }

    /// <summary>The values as a new array.</summary>
    public double[] ToArray()
    {
        var values = new double[Length];
        for (int t = 0; t < Length; t++)
        {
            values[t] = this[t];
        }
        return values;
    }
}

/// <summary>
/// How each tensor of a call is indexed by (sequence, step, head): each axis's role from its symbol (the batch or
/// sequence axis, a time axis, the run's head or a group of it, or a row axis), built once per tensor per run.
/// </summary>
internal sealed class TensorViews(Problem problem, string headSymbol, IReadOnlyDictionary<string, Tensor> outputs)
{
    private readonly ConcurrentDictionary<string, Lazy<TensorView>> _views = new(StringComparer.Ordinal);

    public Problem Problem { get; } = problem;

    public TensorView this[string name] => _views.GetOrAdd(name, n => new Lazy<TensorView>(() => Create(n))).Value;

    private TensorView Create(string name)
    {
        bool isOutput = outputs.TryGetValue(name, out Tensor? output);
        Tensor tensor = output ?? Problem.Input(name);
        return new TensorView(name, tensor, Problem.ShapeOf(name), Problem, headSymbol, isOutput);
    }
}

/// <summary>One tensor seen by (sequence, step, head): the stride of each role and the row width.</summary>
internal sealed class TensorView
{
    private enum Role { Sequence, Batch, Time, Head, Row }

    private readonly string _name;
    private readonly double[] _data;
    private readonly int _sequenceStride, _timeStride, _headStride, _groupSize = 1, _width = 1, _stateRows = 1, _stateWidth = 1;
    private readonly bool _bySequence, _byBatch, _hasHead;
    private readonly string? _time;

    public TensorView(string name, Tensor tensor, string[] symbols, Problem problem, string headSymbol, bool isOutput)
    {
        _name = name;
        FormContract contract = problem.Contract;
        Role RoleOf(string symbol) =>
            symbol == "B" ? Role.Batch
            : symbol == contract.SequenceSymbol ? Role.Sequence
            : contract.TimeSymbols.Contains(symbol) ? Role.Time
            : symbol == headSymbol || contract.Groups.Any(g => g.Heads == headSymbol && g.Groups == symbol) ? Role.Head
            : Role.Row;
        Role[] roles = symbols.Select(RoleOf).ToArray();
        int[] shape = tensor.ShapeArray();
        _data = tensor.Data;
        int rowAxes = roles.Count(r => r == Role.Row);
        bool rowsLast = roles.Skip(roles.Length - rowAxes).All(r => r == Role.Row);
        if (!rowsLast)
        {
            if (isOutput)
            {
                throw new InvalidOperationException($"output '{name}': its row axes must be its last axes");
            }
            // A copy with the row axes moved last, the other axes in their order: rows become contiguous.
            int[] order = Enumerable.Range(0, roles.Length).OrderBy(a => roles[a] == Role.Row ? 1 : 0).ToArray();
            _data = Permute(tensor, order);
            (symbols, roles, shape) = (order.Select(a => symbols[a]).ToArray(), order.Select(a => roles[a]).ToArray(), order.Select(a => shape[a]).ToArray());
        }
        int[] strides = RowMajorStrides(shape);
        for (int axis = 0; axis < roles.Length; axis++)
        {
            switch (roles[axis])
            {
                case Role.Batch or Role.Sequence:
                    (_sequenceStride, _byBatch, _bySequence) = (strides[axis], roles[axis] == Role.Batch, roles[axis] == Role.Sequence);
                    break;
                case Role.Time:
                    (_time, _timeStride) = (symbols[axis], strides[axis]);
                    break;
                case Role.Head:
                    (_hasHead, _headStride) = (true, strides[axis]);
                    int groups = problem[symbols[axis]];
                    _groupSize = groups == 0 ? 1 : Math.Max(1, problem[headSymbol] / groups);
                    break;
                default:
                    _width *= shape[axis];
                    break;
            }
        }
        // A state [N,H,K,V] is K rows of V values: the last row axis is the row, the others count rows.
        if (rowAxes > 0)
        {
            _stateWidth = shape[^1];
            _stateRows = shape.Skip(shape.Length - rowAxes).SkipLast(1).Aggregate(1, (n, d) => n * d);
        }
    }

    private static int[] RowMajorStrides(int[] shape)
    {
        var strides = new int[shape.Length];
        int stride = 1;
        for (int axis = shape.Length - 1; axis >= 0; axis--)
        {
            strides[axis] = stride;
            stride *= shape[axis];
        }
        return strides;
    }

    /// <summary>The tensor's values with its axes in <paramref name="order"/> (axis i of the result is axis order[i]).</summary>
    private static double[] Permute(Tensor tensor, int[] order)
    {
        int rank = order.Length;
        int[] sourceStrides = tensor.Strides();
        int[] shape = order.Select(tensor.Dim).ToArray();
        var data = new double[tensor.Length];
        var index = new int[rank];
        for (int target = 0; target < data.Length; target++)
        {
            int rest = target, source = 0;
            for (int position = rank - 1; position >= 0; position--)
            {
                index[position] = rest % shape[position];
                rest /= shape[position];
                source += index[position] * sourceStrides[order[position]];
            }
            data[target] = tensor.Data[source];
        }
        return data;
    }

    private int Base(Sequence sequence, int head) =>
        (_byBatch ? sequence.Batch * _sequenceStride : _bySequence ? sequence.Index * _sequenceStride : 0)
        + (_hasHead ? head / _groupSize * _headStride : 0);

    private StepRange Steps(Sequence sequence) => _time is null
        ? throw new InvalidOperationException($"'{_name}' has no time axis: read it by Row or State")
        : sequence.Steps(_time);

    public RowBlock Rows(Sequence sequence, int head)
    {
        StepRange steps = Steps(sequence);
        return new RowBlock(_data, Base(sequence, head) + steps.Start * _timeStride, Math.Max(_timeStride, _width), steps.Length, _width);
    }

    public Series Series(Sequence sequence, int head)
    {
        if (_width != 1)
        {
            throw new InvalidOperationException($"'{_name}' has {_width} values per step, not one: read it by Rows");
        }
        StepRange steps = Steps(sequence);
        return new Series(_data, Base(sequence, head) + steps.Start * _timeStride, _timeStride, steps.Length);
    }

    public Span<double> Row(Sequence sequence, int head) => _time is null
        ? _data.AsSpan(Base(sequence, head), _width)
        : throw new InvalidOperationException($"'{_name}' has a time axis: read it by Rows or Series");

    public RowBlock StateRows(Sequence sequence, int head) => _time is null
        ? new RowBlock(_data, Base(sequence, head), _stateWidth, _stateRows, _stateWidth)
        : throw new InvalidOperationException($"'{_name}' has a time axis: it is not a state");
}
