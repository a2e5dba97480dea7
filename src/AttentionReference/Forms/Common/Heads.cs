using AttentionReference.Tensors;

namespace AttentionReference.Forms.Common;

/// <summary>
/// The one runner of every per-head form: for every (sequence, head) pair of a bound call, in parallel, run the form's
/// body on a <see cref="Head"/>, the pair's view of every tensor. Before the loop, every output of the contract is
/// allocated and each <c>final_X</c> starts as <c>initial_X</c> (zeros where it was left out), so a body that steps its
/// state in place leaves the final state behind. A backward pass runs the same way over the contract's gradients, each
/// <c>dinitial_X</c> starting as the cotangent <c>dfinal_X</c>. Pairs are independent and each is computed start to end
/// by one thread; an output that several pairs write (a gradient of a per-head parameter, or of q and k read by a group
/// of value heads) is summed from the pairs' own copies in pair order after the loop, so the result does not depend on
/// the thread count.
/// </summary>
public static class Heads
{
    /// <summary>
    /// Runs <paramref name="body"/> once per (sequence, head) pair, the heads counted by <paramref name="headSymbol"/>
    /// (H; HV for the delta rule's value heads; D for mamba's channels), and returns the contract's outputs.
    /// </summary>
    public static IReadOnlyDictionary<string, Tensor> Run(Problem problem, Action<Head> body, string headSymbol = "H") =>
        RunOver(problem, body, headSymbol, problem?.Contract.Outputs ?? []);

    /// <summary>
    /// The backward pass: runs <paramref name="body"/> once per pair like <see cref="Run(Problem, Action{Head}, string)"/>,
    /// and returns the gradients of the inputs the call gave (the contract's <see cref="FormContract.Gradients"/>).
    /// </summary>
    public static IReadOnlyDictionary<string, Tensor> Backward(Problem problem, Action<Head> body, string headSymbol = "H")
    {
        ArgumentNullException.ThrowIfNull(problem);
        return RunOver(problem, body, headSymbol,
            problem.Contract.Gradients.Where(g => problem.Has(problem.Contract.InputOfGradient(g.Name)!)).ToArray());
    }

    private static IReadOnlyDictionary<string, Tensor> RunOver(Problem problem, Action<Head> body, string headSymbol, IReadOnlyList<TensorSpec> outputs)
    {
        ArgumentNullException.ThrowIfNull(body);
        HeadViews views = ViewsOf(problem, headSymbol, outputs);
        int heads = problem[headSymbol];
        IReadOnlyList<Sequence> sequences = problem.Sequences;
        var pairs = new Head[sequences.Count * heads];
        Parallel.For(0, pairs.Length, pair =>
        {
            Head head = views.Pair(sequences[pair / heads], pair % heads);
            body(head);
            head.StoreStates();
            pairs[pair] = head;
        });
        foreach (Head head in pairs)
        {
            head.AddShared();
        }
        return views.Outputs;
    }

    /// <summary>
    /// The contract's outputs, allocated as <see cref="Run"/> allocates them, and a <see cref="Head"/> for any pair: for
    /// an engine that schedules its own parallel work within and across pairs (FlashAttention's query blocks of all the
    /// heads that read one key/value head, which share its packed keys). Each task must still be computed start to end
    /// by one thread. Outputs only: a state is stored back by <see cref="Run"/>.
    /// </summary>
    public static HeadViews Views(Problem problem, string headSymbol = "H") => ViewsOf(problem, headSymbol, problem?.Contract.Outputs ?? []);

    private static HeadViews ViewsOf(Problem problem, string headSymbol, IReadOnlyList<TensorSpec> specs)
    {
        ArgumentNullException.ThrowIfNull(problem);
        var outputs = specs.ToDictionary(s => s.Name, s => problem.NewOutput(s.Name), StringComparer.Ordinal);
        foreach (var (name, output) in outputs)
        {
            // final_X starts as initial_X; in a backward pass dinitial_X starts as the cotangent dfinal_X.
            string? start = name.StartsWith("final_", StringComparison.Ordinal) ? "initial_" + name["final_".Length..]
                : name.StartsWith("dinitial_", StringComparison.Ordinal) ? "dfinal_" + name["dinitial_".Length..]
                : null;
            if (start is not null && problem.Optional(start) is { } initial)
            {
                initial.Data.CopyTo(output.Data, 0);
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
    private readonly Dictionary<string, (RowBlock InPlace, RowBlock Own)> _shared = new(StringComparer.Ordinal);

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
    public RowBlock Rows(string name) => Own(name, view => view.Rows(Sequence, Index));

    /// <summary><see cref="Rows"/> of an optional input; null when it was left out.</summary>
    public RowBlock? OptionalRows(string name) => Problem.Has(name) ? Rows(name) : null;

    /// <summary>Value t is the tensor's value at step t of this pair: a tensor with one value per step ([B,T,H]).</summary>
    public Series Series(string name)
    {
        TensorView view = _views[name];
        if (!view.Shared)
        {
            return view.Series(Sequence, Index);
        }
        return Own(name, v => v.SeriesRows(Sequence, Index)).AsSeries();
    }

    /// <summary><see cref="Series"/> of an optional input; null when it was left out.</summary>
    public Series? OptionalSeries(string name) => Problem.Has(name) ? Series(name) : null;

    /// <summary>The pair's values of a tensor without a time axis (u [H,K]: row h; A [D,N]: row d), packed.</summary>
    public Span<double> Row(string name) => Own(name, view => view.RowOf(Sequence, Index))[0];

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
            RowBlock inPlace = _views[StateName(name)].StateRows(Sequence, Index);
            RowBlock aligned = RowBlock.AlignedZeros(inPlace.Count, inPlace.Width);
            for (int a = 0; a < inPlace.Count; a++)
            {
                inPlace[a].CopyTo(aligned[a]);
            }
            _states[name] = state = (inPlace, aligned);
        }
        return state.Aligned;
    }

    /// <summary>
    /// The backward pass's state dS (its rows as <see cref="State"/> gives S's): the gradient <c>dinitial_</c>
    /// <paramref name="name"/>, which starts as the cotangent <c>dfinal_</c><paramref name="name"/> and is left as the
    /// gradient of the initial state when the reverse-time recurrence has reached the sequence's first step.
    /// </summary>
    public RowBlock StateGradient(string name = "state")
    {
        if (_views.HasOutput("dinitial_" + name))
        {
            return State("d" + name);
        }
        // No initial state was given, so it has no gradient to return; dS still starts as the cotangent.
        if (!_states.TryGetValue("d" + name, out var state))
        {
            RowBlock start = InitialState(name);
            RowBlock dS = RowBlock.AlignedZeros(start.Count, start.Width);
            if (Problem.Has("dfinal_" + name))
            {
                RowBlock cotangent = _views["dfinal_" + name].StateRows(Sequence, Index);
                for (int a = 0; a < dS.Count; a++)
                {
                    cotangent[a].CopyTo(dS[a]);
                }
            }
            _states["d" + name] = state = (RowBlock.Zeros(0, 0), dS);
        }
        return state.Aligned;
    }

    /// <summary>
    /// A copy of the pair's initial state <c>initial_</c><paramref name="name"/> (zeros where it was left out), in the rows
    /// <see cref="State"/> gives: what a backward pass replays the recurrence from.
    /// </summary>
    public RowBlock InitialState(string name = "state")
    {
        RowBlock shape = _views["final_" + name].StateRows(Sequence, Index);
        RowBlock S0 = RowBlock.AlignedZeros(shape.Count, shape.Width);
        if (Problem.Has("initial_" + name))
        {
            RowBlock given = _views["initial_" + name].StateRows(Sequence, Index);
            for (int a = 0; a < S0.Count; a++)
            {
                given[a].CopyTo(S0[a]);
            }
        }
        return S0;
    }

    // State(name) steps final_name; StateGradient(name) steps dinitial_name (State("d" + name) maps to it).
    private static string StateName(string name) =>
        name.StartsWith('d') && name.Length > 1 ? "dinitial_" + name[1..] : "final_" + name;

    /// <summary>
    /// The view of <paramref name="name"/> that <paramref name="inPlace"/> gives, or, for an output several pairs write,
    /// this pair's own zero copy of that view, summed into the output by <see cref="AddShared"/>.
    /// </summary>
    private RowBlock Own(string name, Func<TensorView, RowBlock> inPlace)
    {
        TensorView view = _views[name];
        if (!view.Shared)
        {
            return inPlace(view);
        }
        if (!_shared.TryGetValue(name, out var shared))
        {
            RowBlock target = inPlace(view);
            _shared[name] = shared = (target, RowBlock.Zeros(target.Count, target.Width));
        }
        return shared.Own;
    }

    /// <summary>Adds this pair's copies of the outputs several pairs write into them (after the loop, in pair order).</summary>
    internal void AddShared()
    {
        foreach (var (target, own) in _shared.Values)
        {
            for (int t = 0; t < target.Count; t++)
            {
                Numerics.VectorKernels.AddTo(own[t], target[t]);
            }
        }
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
