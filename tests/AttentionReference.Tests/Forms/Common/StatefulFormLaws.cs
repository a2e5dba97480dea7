using AttentionReference.Forms;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Forms.Common;

/// <summary>How the log gates of a case are drawn.</summary>
public enum GateRegime
{
    /// <summary>logsigmoid of a standard normal: the gates models produce.</summary>
    Mild,
    /// <summary>Uniform in [−20, −10]: within 36 to 71 steps the summed gates pass −709, where exp(−G) overflows.</summary>
    Strong,
    /// <summary>Each gate either tiny (−1e-8 … −1e-4) or large (−20 … −10): decay factors spanning 1 − 1e-8 to 2e-9.</summary>
    Mixed,
}

/// <summary>
/// A random problem for a stateful form of the linear family: shapes (T = 0 included, T up to 48 so strong gates sum
/// past −709, where the factorised exp(G_i)·exp(−G_j) overflows), a gate regime, the variant under test, a chunk size (often not dividing T, sometimes above T), a split
/// point, whether an initial state is given, and the seed of every tensor.
/// </summary>
public sealed record StatefulCase(int B, int T, int H, int K, int V, GateRegime Regime, string Variant, int ChunkSize, int Split, bool WithState, int Seed)
{
    public static Arbitrary<StatefulCase> Arbitrary { get; } =
        (from b in Gen.Choose(1, 2)
         from t in Gen.Choose(0, 48)
         from h in Gen.Choose(1, 2)
         from k in Gen.Elements(1, 2, 3, 5)
         from v in Gen.Elements(1, 2, 4)
         from regime in Gen.Elements(GateRegime.Mild, GateRegime.Strong, GateRegime.Mixed)
         from variant in Gen.Elements("recurrent", "parallel", "chunked")
         from chunk in Gen.Choose(1, 50)
         from split in Gen.Choose(0, 1000)
         from withState in Gen.Elements(false, true)
         from seed in Gen.Choose(0, int.MaxValue)
         select new StatefulCase(b, t, h, k, v, regime, variant, chunk, split, withState, seed)).ToArbitrary();

    /// <summary>Log gates of the given shape under this case's regime (all ≤ 0).</summary>
    public Tensor Gates(Random random, params int[] shape)
    {
        var g = Tensor.Zeros(shape);
        for (int i = 0; i < g.Length; i++)
        {
            g.Data[i] = Regime switch
            {
                GateRegime.Mild => -Math.Log(1 + Math.Exp(-TestTensors.Normal(random, 1, 1).Data[0])), // logsigmoid
                GateRegime.Strong => -20 + 10 * random.NextDouble(),
                _ => random.NextDouble() < 0.5 ? -Math.Pow(10, -8 + 4 * random.NextDouble()) : -10 - 10 * random.NextDouble(),
            };
        }
        return g;
    }
}

/// <summary>
/// The laws every stateful form of the linear family satisfies, written once against the form's wiring
/// (<see cref="IForm"/>: the names and shapes the CLI uses) and run once per form by a derived class.
/// </summary>
public abstract partial class StatefulFormLaws
{
    // The variants compute the same sums in double in different orders, with decay factors exp(a)·exp(b) in one and
    // exp(a + b) in another: a few ulps per term over at most 48 terms of size ≤ 1 (every decay factor is ≤ 1), with
    // outputs of order one. 1e-12 relative to the output's norm leaves a margin of about 100.
    protected const double SameMathInDouble = 1e-12;

    /// <summary>The form under test.</summary>
    protected abstract IForm Form { get; }

    /// <summary>The form's inputs for a batch of <paramref name="b"/> entries of <paramref name="t"/> steps (no state, no cu_seqlens).</summary>
    protected abstract Dictionary<string, Tensor> Inputs(StatefulCase c, Random random, int b, int t);

    /// <summary>The parameters of the case (beyond chunk_size).</summary>
    protected virtual FormParameters Parameters(StatefulCase c) => FormParameters.None;

    /// <summary>Whether the case is causal (the causality law skips the others).</summary>
    protected virtual bool IsCausal(StatefulCase c) => true;

    /// <summary>
    /// Whether a run's final states carry all that a later run of the case reads (the state-passing law skips the
    /// others: based's window branch keeps no keys across calls).
    /// </summary>
    protected virtual bool PassesAllItReadsOn(StatefulCase c) => true;

    /// <summary>The form's name of the laws' variant <paramref name="name"/> (recurrent, parallel, chunked): power's parallel form is "quadratic".</summary>
    protected virtual string Variant(string name) => name;

    [Law]
    public bool Parallel_equals_recurrent(StatefulCase c)
    {
        var inputs = WithStates(c, new Random(c.Seed), Inputs(c, new Random(c.Seed), c.B, c.T), c.B);
        return AllClose(c, inputs, Run("parallel", inputs, c), Run("recurrent", inputs, c));
    }

    [Law]
    public bool Chunked_equals_recurrent_for_any_chunk_size(StatefulCase c)
    {
        var inputs = WithStates(c, new Random(c.Seed), Inputs(c, new Random(c.Seed), c.B, c.T), c.B);
        return AllClose(c, inputs, Run("chunked", inputs, c), Run("recurrent", inputs, c));
    }

    [Law]
    public bool Running_in_two_parts_with_the_state_passed_equals_one_run(StatefulCase c)
    {
        if (!IsCausal(c) || !PassesAllItReadsOn(c))
        {
            return true; // a non-causal first part would read the second part's keys; a second part would miss keys no state holds
        }
        var inputs = WithStates(c, new Random(c.Seed), Inputs(c, new Random(c.Seed), c.B, c.T), c.B);
        int t = c.Split % (c.T + 1);
        var whole = Run(c.Variant, inputs, c);
        var first = Run(c.Variant, SliceTime(inputs, 0, t), c);
        var secondInputs = SliceTime(inputs, t, c.T);
        foreach (var (name, state) in FinalStates(first))
        {
            secondInputs["initial_" + name["final_".Length..]] = state;
        }
        var second = Run(c.Variant, secondInputs, c);
        var joined = new Dictionary<string, Tensor>(second) { ["o"] = ConcatTime(first["o"], second["o"]) };
        return AllClose(c, inputs, joined, whole);
    }

    [Law]
    public bool Varlen_equals_separate_runs(StatefulCase c)
    {
        var random = new Random(c.Seed);
        int[] cu = Boundaries(random, c.T);
        int n = cu.Length - 1;
        var packed = WithStates(c, random, Inputs(c, random, 1, c.T), n);
        packed["cu_seqlens"] = new Tensor([n + 1], cu.Select(x => (double)x).ToArray(), DType.I64);
        var together = Run(c.Variant, packed, c);
        for (int s = 0; s < n; s++)
        {
            var alone = SliceTime(packed, cu[s], cu[s + 1]);
            alone.Remove("cu_seqlens");
            foreach (string name in alone.Keys.Where(k => k.StartsWith("initial_", StringComparison.Ordinal)).ToArray())
            {
                alone[name] = Row(packed[name], s);
            }
            var separate = Run(c.Variant, alone, c);
            // Each sequence is computed by the same arithmetic either way: the results must agree bit for bit.
            if (!SliceTime(together["o"], cu[s], cu[s + 1]).Data.SequenceEqual(separate["o"].Data)
                || FinalStates(together).Any(f => !Row(f.Value, s).Data.SequenceEqual(Row(separate[f.Key], 0).Data)))
            {
                return false;
            }
        }
        return true;
    }

    [Law]
    public bool Outputs_do_not_depend_on_later_inputs(StatefulCase c)
    {
        if (!IsCausal(c) || c.T == 0)
        {
            return true; // a non-causal case reads every step by definition
        }
        int t0 = c.Split % c.T;
        var inputs = WithStates(c, new Random(c.Seed), Inputs(c, new Random(c.Seed), c.B, c.T), c.B);
        var other = Inputs(c, new Random(c.Seed + 1), c.B, c.T);
        var changed = new Dictionary<string, Tensor>(inputs);
        foreach (var (name, tensor) in other)
        {
            if (HasTimeAxis(name) && name != "cu_seqlens")
            {
                changed[name] = ConcatTime(SliceTime(inputs[name], 0, t0), SliceTime(tensor, t0, c.T));
            }
        }
        var before = Run(c.Variant, inputs, c)["o"];
        var after = Run(c.Variant, changed, c)["o"];
        // Steps before t0 read nothing after it: the same arithmetic on the same numbers, bit for bit.
        return SliceTime(before, 0, t0).Data.SequenceEqual(SliceTime(after, 0, t0).Data);
    }

    [Law]
    public bool Batch_entries_are_independent(StatefulCase c)
    {
        var inputs = WithStates(c, new Random(c.Seed), Inputs(c, new Random(c.Seed), 2, c.T), 2);
        var both = Run(c.Variant, inputs, c);
        for (int b = 0; b < 2; b++)
        {
            var one = inputs.ToDictionary(p => p.Key, p => IsBatched(p.Key) ? Row(p.Value, b) : p.Value);
            var alone = Run(c.Variant, one, c);
            if (both.Any(p => !Row(p.Value, b).Data.SequenceEqual(alone[p.Key].Data)))
            {
                return false;
            }
        }
        return true;
    }

    // ---- helpers ----

    protected IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, StatefulCase c) =>
        Form.Run(Variant(variant), inputs, Parameters(c).With("chunk_size", c.ChunkSize.ToString(System.Globalization.CultureInfo.InvariantCulture)));

    /// <summary>
    /// Adds initial states for <paramref name="rows"/> sequences when the case asks for them: the final states of a
    /// warm-up run on other random steps, so every state is one the form can reach (a positive normaliser included).
    /// </summary>
    protected Dictionary<string, Tensor> WithStates(StatefulCase c, Random random, Dictionary<string, Tensor> inputs, int rows)
    {
        if (c.WithState)
        {
            var warmUp = Form.Run("recurrent", Inputs(c, random, rows, 1 + random.Next(5)), Parameters(c));
            foreach (var (name, state) in FinalStates(warmUp))
            {
                inputs["initial_" + name["final_".Length..]] = state;
            }
        }
        return inputs;
    }

    protected static IEnumerable<KeyValuePair<string, Tensor>> FinalStates(IReadOnlyDictionary<string, Tensor> outputs) =>
        outputs.Where(p => p.Key.StartsWith("final_", StringComparison.Ordinal));

    protected bool AllClose(IReadOnlyDictionary<string, Tensor> actual, IReadOnlyDictionary<string, Tensor> expected) =>
        expected.All(p => Close(p.Key, actual[p.Key], p.Value));

    /// <summary>
    /// Whether two runs of the case on <paramref name="inputs"/> agree along different paths (the variants, a run split in
    /// two): every output within <see cref="Close"/> unless a form's paths round relative to another magnitude (power's).
    /// </summary>
    protected virtual bool AllClose(StatefulCase c, IReadOnlyDictionary<string, Tensor> inputs, IReadOnlyDictionary<string, Tensor> actual,
        IReadOnlyDictionary<string, Tensor> expected)
    {
        if (TermBoundingInputs.Count == 0)
        {
            return AllClose(actual, expected);
        }
        var absolute = inputs.ToDictionary(p => p.Key, p => TermBoundingInputs.Contains(p.Key) ? Abs(p.Value) : p.Value);
        var magnitude = Run("recurrent", absolute, c);
        return expected.All(p =>
        {
            var (diff, norm) = TestTensors.Norms(actual[p.Key], p.Value);
            return actual[p.Key].Shape.SequenceEqual(p.Value.Shape)
                && diff <= SameMathInDouble * Math.Max(norm, TestTensors.Norms(magnitude[p.Key], magnitude[p.Key]).Norm);
        });
    }

    /// <summary>
    /// The inputs whose absolute values bound every term of every output. Where the outputs and states are sums of
    /// products of q, k, v and the initial state with factors in [0, 1] (the decays), the same form run on |q|, |k|, |v|
    /// and |S0| gives each element's sum of absolute terms, and rounding is relative to that rather than to the output,
    /// which can cancel to near zero (a final state of one element, summing signed terms of order one). Empty: the
    /// output's own norm is the scale.
    /// </summary>
    protected virtual IReadOnlyCollection<string> TermBoundingInputs => [];

    private static Tensor Abs(Tensor x) => new([.. x.Shape], x.Data.Select(Math.Abs).ToArray(), x.DType);

    /// <summary>
    /// Whether the output <paramref name="name"/> of two runs agrees within <see cref="SameMathInDouble"/> relative to
    /// its norm; a form may hold an output to another bound (mlstm's stabiliser m is a log: absolute).
    /// </summary>
    protected virtual bool Close(string name, Tensor actual, Tensor expected) => TestTensors.Close(actual, expected, SameMathInDouble);

    private bool HasTimeAxis(string name) =>
        Form.Inputs.Concat(Form.Outputs).Concat(Form is Form { } withContract ? withContract.Contract.Cotangents : [])
            .FirstOrDefault(s => s.Name == name)?.HasTimeAxis ?? false;

    // Inputs with a batch axis: the time-axis ones and the states; proj, gamma and friends are shared by all entries.
    private bool IsBatched(string name) => HasTimeAxis(name) || name.StartsWith("initial_", StringComparison.Ordinal);

    private Dictionary<string, Tensor> SliceTime(IReadOnlyDictionary<string, Tensor> inputs, int t0, int t1) =>
        inputs.ToDictionary(p => p.Key, p => HasTimeAxis(p.Key) ? SliceTime(p.Value, t0, t1) : p.Value);

    /// <summary>x[:, t0:t1] of a [B,T,...] tensor.</summary>
    protected static Tensor SliceTime(Tensor x, int t0, int t1)
    {
        int[] shape = x.ShapeArray();
        int inner = shape.Skip(2).Aggregate(1, (a, d) => a * d);
        var data = new List<double>();
        for (int b = 0; b < shape[0]; b++)
        {
            data.AddRange(x.Data.AsSpan((b * shape[1] + t0) * inner, (t1 - t0) * inner).ToArray());
        }
        shape[1] = t1 - t0;
        return new Tensor(shape, [.. data], x.DType);
    }

    /// <summary>[a, b] along the time axis of two [B,T,...] tensors.</summary>
    protected static Tensor ConcatTime(Tensor a, Tensor b)
    {
        int[] shape = a.ShapeArray();
        int inner = shape.Skip(2).Aggregate(1, (x, d) => x * d);
        var data = new List<double>();
        for (int i = 0; i < shape[0]; i++)
        {
            data.AddRange(a.Data.AsSpan(i * a.Dim(1) * inner, a.Dim(1) * inner).ToArray());
            data.AddRange(b.Data.AsSpan(i * b.Dim(1) * inner, b.Dim(1) * inner).ToArray());
        }
        shape[1] = a.Dim(1) + b.Dim(1);
        return new Tensor(shape, [.. data], a.DType);
    }

    /// <summary>x[r:r+1] along the first axis.</summary>
    protected static Tensor Row(Tensor x, int r)
    {
        int[] shape = x.ShapeArray();
        int inner = shape.Skip(1).Aggregate(1, (a, d) => a * d);
        shape[0] = 1;
        return new Tensor(shape, x.Data.AsSpan(r * inner, inner).ToArray(), x.DType);
    }

    /// <summary>cu_seqlens for 1 to 4 sequences covering [0, T), empty sequences allowed.</summary>
    private static int[] Boundaries(Random random, int time)
    {
        int n = 1 + random.Next(4);
        var cuts = Enumerable.Range(0, n - 1).Select(_ => random.Next(time + 1)).Order().ToList();
        return [0, .. cuts, time];
    }
}
