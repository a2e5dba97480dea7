using System.Collections.Concurrent;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Common;

/// <summary>
/// How each tensor of a call is indexed by (sequence, step, head): each axis's role from its symbol (the batch or
/// sequence axis, a time axis, the run's head or a group of it, or a row axis), built once per tensor per run.
/// </summary>
internal sealed class TensorViews(Problem problem, string headSymbol, IReadOnlyDictionary<string, Tensor> outputs)
{
    private readonly ConcurrentDictionary<string, Lazy<TensorView>> _views = new(StringComparer.Ordinal);

    public Problem Problem { get; } = problem;

    public TensorView this[string name] => _views.GetOrAdd(name, n => new Lazy<TensorView>(() => Create(n))).Value;

    /// <summary>Whether the run writes the output <paramref name="name"/>.</summary>
    public bool HasOutput(string name) => outputs.ContainsKey(name);

    /// <summary>A view of a tensor's shape alone, for one that is neither an input nor an output of this run.</summary>
    private TensorView ShapeOnly(string name) =>
        new(name, Problem.NewOutput(name), Problem.ShapeOf(name), Problem, headSymbol, isOutput: false);

    private TensorView Create(string name)
    {
        bool isOutput = outputs.TryGetValue(name, out Tensor? output);
        if (!isOutput && !Problem.Has(name))
        {
            return ShapeOnly(name); // final_state in a backward pass: its per-pair shape is what InitialState needs
        }
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
    private readonly bool _bySequence, _byBatch, _hasHead, _grouped;
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
                    (_hasHead, _headStride, _grouped) = (true, strides[axis], symbols[axis] != headSymbol);
                    int groups = problem[symbols[axis]];
                    _groupSize = groups == 0 ? 1 : Math.Max(1, problem[headSymbol] / groups);
                    break;
                default:
                    _width *= shape[axis];
                    break;
            }
        }
        // An output that several pairs write: one without a batch or sequence axis (a per-head parameter's gradient),
        // indexed by a group of the run's heads (dq, dk of the H heads that HV value heads read), without the run's head
        // axis (the gradient of a cache every head reads, mla's dc_kv), or by batch without a time axis while packed
        // sequences share a batch entry (a [B,H] parameter's gradient under cu_seqlens).
        Shared = isOutput && ((!_byBatch && !_bySequence) || _grouped || !_hasHead
            || (_byBatch && _time is null && problem.Sequences.Any(s => s.Batch != s.Index)));
        // A state [N,H,K,V] is K rows of V values: the last row axis is the row, the others count rows.
        if (rowAxes > 0)
        {
            _stateWidth = shape[^1];
            _stateRows = shape.Skip(shape.Length - rowAxes).SkipLast(1).Aggregate(1, (n, d) => n * d);
        }
    }

    /// <summary>Whether several pairs write this output: each then writes its own copy, summed after the loop.</summary>
    public bool Shared { get; }

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

    /// <summary>The pair's values of a tensor without a time axis, as one row.</summary>
    public RowBlock RowOf(Sequence sequence, int head) => _time is null
        ? new RowBlock(_data, Base(sequence, head), _width, 1, _width)
        : throw new InvalidOperationException($"'{_name}' has a time axis: read it by Rows or Series");

    /// <summary>The pair's series as rows of one value (the shape of a pair's own copy of a shared output).</summary>
    public RowBlock SeriesRows(Sequence sequence, int head)
    {
        Series series = Series(sequence, head);
        return new RowBlock(_data, Base(sequence, head) + Steps(sequence).Start * _timeStride, Math.Max(_timeStride, 1), series.Length, 1);
    }

    public Span<double> Row(Sequence sequence, int head) => _time is null
        ? _data.AsSpan(Base(sequence, head), _width)
        : throw new InvalidOperationException($"'{_name}' has a time axis: read it by Rows or Series");

    public RowBlock StateRows(Sequence sequence, int head) => _time is null
        ? new RowBlock(_data, Base(sequence, head), _stateWidth, _stateRows, _stateWidth)
        : throw new InvalidOperationException($"'{_name}' has a time axis: it is not a state");
}
