using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.Delta;

/// <summary>The outputs of a delta-family form: o [B,T,HV,V] and final_state [N,HV,K,V].</summary>
internal sealed record DeltaOutputs(Tensor O, Tensor FinalState)
{
    public static DeltaOutputs Of(IReadOnlyDictionary<string, Tensor> outputs) => new(outputs["o"], outputs["final_state"]);
}

/// <summary>One variant of a delta-family form on time-axis inputs (named as fla names them), an initial state and cu_seqlens.</summary>
internal delegate DeltaOutputs DeltaRunner(IReadOnlyDictionary<string, Tensor> inputs, Tensor? initialState, Tensor? cuSeqlens);

/// <summary>
/// The laws every stateful form of the family must satisfy, written once for all of them as checks on a runner; the
/// [Law]s of DeltaFamilyTests.cs and of each form's test file state them.
/// </summary>
internal static class DeltaLaws
{
    // Both sides compute the same function in double through different association orders (a WY solve against a
    // token-by-token product, or a run split in two). For T ≤ 17, K ≤ 8 with |β| < 2 and unit-norm keys the state
    // stays O(1) and each side's rounding error is a small multiple of T·K·eps ≈ 1e-14, far below this bound.
    public const double SameMathInDouble = 1e-12;

    /// <summary>
    /// <paramref name="variant"/> of <paramref name="form"/> called through its contract, with the case's chunk size and
    /// (where the form has it) in-kernel L2 norm.
    /// </summary>
    public static DeltaRunner Runner(IForm form, string variant, DeltaCase c) => (x, s0, cu) =>
    {
        var inputs = new Dictionary<string, Tensor>(x);
        if (s0 is not null)
        {
            inputs["initial_state"] = s0;
        }
        if (cu is not null)
        {
            inputs["cu_seqlens"] = cu;
        }
        return DeltaOutputs.Of(form.Call(variant, inputs, Parameters(form, c)));
    };

    /// <summary>The parameters of a case's call: its chunk size and, where the form has it, the in-kernel L2 norm.</summary>
    public static string[] Parameters(IForm form, DeltaCase c)
    {
        var parameters = new List<string> { FormCalls.ChunkSize(c.Chunk) };
        if (form.Parameters.Any(p => p.Name == "use_qk_l2norm_in_kernel"))
        {
            parameters.Add("use_qk_l2norm_in_kernel=" + c.L2Norm.ToString(CultureInfo.InvariantCulture));
        }
        return [.. parameters];
    }

    // The backward passes of two variants (or of one run and a run split in two) compute the same sums in double in other
    // orders, over the terms of the forward and of the reverse-time recurrence (about twice the forward's): 1e-11
    // relative to each gradient's norm keeps the forward laws' margin of about 100 (SameMathInDouble) on sums of about
    // twice the length.
    public const double SameGradientsInDouble = 1e-11;

    /// <summary>
    /// The backward pass of <paramref name="variant"/> on inputs that carry the cotangents ("do", "dfinal_state"), with
    /// the case's parameters: the gradient of every differentiable input given, by the contract's names ("dq", "dgk", ...).
    /// </summary>
    public static IReadOnlyDictionary<string, Tensor> Gradients(IForm form, string variant, DeltaCase c, IReadOnlyDictionary<string, Tensor> inputs)
    {
        var bound = (Form)form;
        var values = Parameters(form, c).Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p[1], StringComparer.Ordinal);
        return bound.Backward(variant, bound.Contract.Bind(inputs, new FormParameters(values)));
    }

    /// <summary>
    /// Random cotangents of <paramref name="outputs"/>: "do" always, "dfinal_state" unless <paramref name="withoutState"/>
    /// (an absent cotangent is zero).
    /// </summary>
    public static Dictionary<string, Tensor> Cotangents(Random random, IReadOnlyDictionary<string, Tensor> outputs, bool withoutState) =>
        outputs.Where(p => !(withoutState && p.Key == "final_state"))
            .ToDictionary(p => "d" + p.Key, p => TestTensors.Normal(random, 1, p.Value.ShapeArray()));

    /// <summary>Whether every gradient of <paramref name="expected"/> is in <paramref name="actual"/> within <see cref="SameGradientsInDouble"/>, and no other.</summary>
    public static bool SameGradients(IReadOnlyDictionary<string, Tensor> actual, IReadOnlyDictionary<string, Tensor> expected) =>
        actual.Count == expected.Count
        && expected.All(p => actual.TryGetValue(p.Key, out Tensor? a) && TestTensors.Close(a, p.Value, SameGradientsInDouble));

    /// <summary>The time-axis tensors a form reads, picked from a case's full input set.</summary>
    public static Dictionary<string, Tensor> Pick(Dictionary<string, Tensor> all, params string[] names) =>
        names.ToDictionary(n => n, n => all[n]);

    public static bool Agree(DeltaOutputs actual, DeltaOutputs expected, double tolerance = SameMathInDouble) =>
        TestTensors.Close(actual.O, expected.O, tolerance) && TestTensors.Close(actual.FinalState, expected.FinalState, tolerance);

    public static bool Identical(DeltaOutputs actual, DeltaOutputs expected) =>
        actual.O.Data.SequenceEqual(expected.O.Data) && actual.FinalState.Data.SequenceEqual(expected.FinalState.Data);

    /// <summary>Running [0, t) then [t, T) from the first part's final state equals one run, for a t from the seed.</summary>
    public static bool StatePassing(DeltaRunner run, IReadOnlyDictionary<string, Tensor> inputs, Tensor? initialState, int seed)
    {
        int time = inputs["q"].Dim(1);
        int split = new Random(seed).Next(0, time + 1);
        DeltaOutputs whole = run(inputs, initialState, null);
        DeltaOutputs first = run(inputs.ToDictionary(kv => kv.Key, kv => TimeAxis.Slice(kv.Value, 0, split)), initialState, null);
        DeltaOutputs second = run(inputs.ToDictionary(kv => kv.Key, kv => TimeAxis.Slice(kv.Value, split, time - split)), first.FinalState, null);
        return Agree(new DeltaOutputs(TimeAxis.Concat(first.O, second.O), second.FinalState), whole);
    }

    /// <summary>
    /// Batch entry 0 cut into 1–3 sequences (some possibly empty), packed with cu_seqlens, each with its own initial
    /// state row, equals separate runs, bit for bit (the same arithmetic on the same numbers).
    /// </summary>
    public static bool VarlenEqualsSeparateRuns(DeltaRunner run, IReadOnlyDictionary<string, Tensor> inputs, int heads, int dk, int dv, int seed)
    {
        var random = new Random(seed);
        int time = inputs["q"].Dim(1);
        int count = random.Next(1, 4);
        int[] cuts = [0, .. Enumerable.Range(0, count - 1).Select(_ => random.Next(0, time + 1)).Order(), time];
        Tensor states = TestTensors.Normal(random, 1, count, heads, dk, dv);
        var entry = inputs.ToDictionary(kv => kv.Key, kv => TimeAxis.Entry(kv.Value, 0));
        var cu = new Tensor([cuts.Length], cuts.Select(x => (double)x).ToArray(), DType.I64);
        DeltaOutputs packed = run(entry, states, cu);

        var outputs = new List<Tensor>();
        for (int n = 0; n < count; n++)
        {
            var piece = entry.ToDictionary(kv => kv.Key, kv => TimeAxis.Slice(kv.Value, cuts[n], cuts[n + 1] - cuts[n]));
            DeltaOutputs alone = run(piece, TimeAxis.Entry(states, n), null);
            outputs.Add(alone.O);
            if (!alone.FinalState.Data.SequenceEqual(TimeAxis.Entry(packed.FinalState, n).Data))
            {
                return false;
            }
        }
        return TimeAxis.Pack(outputs).Data.SequenceEqual(packed.O.Data);
    }

    /// <summary>Changing every input from step t0 on leaves the outputs before t0 unchanged, bit for bit.</summary>
    public static bool Causal(DeltaRunner run, IReadOnlyDictionary<string, Tensor> inputs, Tensor? initialState, int seed)
    {
        int time = inputs["q"].Dim(1);
        int from = new Random(seed).Next(0, time);
        DeltaOutputs before = run(inputs, initialState, null);
        DeltaOutputs after = run(inputs.ToDictionary(kv => kv.Key, kv => TimeAxis.PerturbFrom(kv.Value, from)), initialState, null);
        return TimeAxis.Slice(before.O, 0, from).Data.SequenceEqual(TimeAxis.Slice(after.O, 0, from).Data);
    }

    /// <summary>Batch entries are independent: running entry b alone gives entry b of the batched run, bit for bit.</summary>
    public static bool BatchEntriesIndependent(DeltaRunner run, IReadOnlyDictionary<string, Tensor> inputs, Tensor? initialState)
    {
        DeltaOutputs all = run(inputs, initialState, null);
        int batch = inputs["q"].Dim(0);
        for (int b = 0; b < batch; b++)
        {
            DeltaOutputs alone = run(inputs.ToDictionary(kv => kv.Key, kv => TimeAxis.Entry(kv.Value, b)),
                initialState is null ? null : TimeAxis.Entry(initialState, b), null);
            if (!alone.O.Data.SequenceEqual(TimeAxis.Entry(all.O, b).Data)
                || !alone.FinalState.Data.SequenceEqual(TimeAxis.Entry(all.FinalState, b).Data))
            {
                return false;
            }
        }
        return true;
    }
}

/// <summary>
/// The family's equations as FORMS.md writes them, with explicit K x K transition matrices and none of the library's
/// code: S_t = M_t S_{t−1} + N_t, o_t = scale·S_tᵀ q_t. Slow and plain, for the "recurrent = definition" laws.
/// </summary>
internal static class Textbook
{
    /// <summary>
    /// S_t = (I − β_t k_t k_tᵀ) Diag(exp(γ_t)) S_{t−1} + β_t k_t v_tᵀ per value column (β per value when beta has 4 axes),
    /// γ_t from <paramref name="logDecay"/>(b, t, hv, d) — 0 for the delta rule.
    /// </summary>
    public static DeltaOutputs DeltaFamily(Tensor q, Tensor k, Tensor v, Tensor beta, Func<int, int, int, int, double> logDecay,
        bool l2Norm, Tensor? initialState)
    {
        int batch = q.Dim(0), time = q.Dim(1), heads = q.Dim(2), dk = q.Dim(3), hv = v.Dim(2), dv = v.Dim(3);
        double scale = 1 / Math.Sqrt(dk);
        var o = Tensor.Zeros(batch, time, hv, dv);
        var final = Tensor.Zeros(batch, hv, dk, dv);
        for (int b = 0; b < batch; b++)
        {
            for (int h = 0; h < hv; h++)
            {
                int hk = h / (hv / heads);
                var s = new double[dk, dv];
                for (int d = 0; d < dk; d++)
                {
                    for (int c = 0; c < dv; c++)
                    {
                        s[d, c] = initialState is null ? 0 : initialState[b, h, d, c];
                    }
                }
                for (int t = 0; t < time; t++)
                {
                    double[] qt = Vector(q, b, t, hk, dk, l2Norm), kt = Vector(k, b, t, hk, dk, l2Norm);
                    var next = new double[dk, dv];
                    for (int c = 0; c < dv; c++)
                    {
                        double bt = beta.Rank == 4 ? beta[b, t, h, c] : beta[b, t, h];
                        for (int i = 0; i < dk; i++)
                        {
                            double sum = bt * kt[i] * v[b, t, h, c];
                            for (int j = 0; j < dk; j++)
                            {
                                double m = (i == j ? 1 : 0) - bt * kt[i] * kt[j]; // (I − β k kᵀ)_ij
                                sum += m * Math.Exp(logDecay(b, t, h, j)) * s[j, c];
                            }
                            next[i, c] = sum;
                        }
                    }
                    s = next;
                    for (int c = 0; c < dv; c++)
                    {
                        double sum = 0;
                        for (int d = 0; d < dk; d++)
                        {
                            sum += s[d, c] * qt[d];
                        }
                        o[b, t, h, c] = scale * sum;
                    }
                }
                for (int d = 0; d < dk; d++)
                {
                    for (int c = 0; c < dv; c++)
                    {
                        final[b, h, d, c] = s[d, c];
                    }
                }
            }
        }
        return new DeltaOutputs(o, final);
    }

    /// <summary>S_t = (Diag(exp(gk_t)) + b_t a_tᵀ) S_{t−1} + k_t v_tᵀ, fla's dplr convention.</summary>
    public static DeltaOutputs Dplr(Tensor q, Tensor k, Tensor v, Tensor a, Tensor bVec, Tensor gk, Tensor? initialState)
    {
        int batch = q.Dim(0), time = q.Dim(1), heads = q.Dim(2), dk = q.Dim(3), dv = v.Dim(3);
        double scale = 1 / Math.Sqrt(dk);
        var o = Tensor.Zeros(batch, time, heads, dv);
        var final = Tensor.Zeros(batch, heads, dk, dv);
        for (int b = 0; b < batch; b++)
        {
            for (int h = 0; h < heads; h++)
            {
                var s = new double[dk, dv];
                for (int d = 0; d < dk; d++)
                {
                    for (int c = 0; c < dv; c++)
                    {
                        s[d, c] = initialState is null ? 0 : initialState[b, h, d, c];
                    }
                }
                for (int t = 0; t < time; t++)
                {
                    var next = new double[dk, dv];
                    for (int i = 0; i < dk; i++)
                    {
                        for (int c = 0; c < dv; c++)
                        {
                            double sum = k[b, t, h, i] * v[b, t, h, c];
                            for (int j = 0; j < dk; j++)
                            {
                                double m = (i == j ? Math.Exp(gk[b, t, h, i]) : 0) + bVec[b, t, h, i] * a[b, t, h, j];
                                sum += m * s[j, c];
                            }
                            next[i, c] = sum;
                        }
                    }
                    s = next;
                    for (int c = 0; c < dv; c++)
                    {
                        double sum = 0;
                        for (int d = 0; d < dk; d++)
                        {
                            sum += s[d, c] * q[b, t, h, d];
                        }
                        o[b, t, h, c] = scale * sum;
                    }
                }
                for (int d = 0; d < dk; d++)
                {
                    for (int c = 0; c < dv; c++)
                    {
                        final[b, h, d, c] = s[d, c];
                    }
                }
            }
        }
        return new DeltaOutputs(o, final);
    }

    private static double[] Vector(Tensor x, int b, int t, int h, int width, bool l2Norm)
    {
        var row = new double[width];
        double sumOfSquares = 0;
        for (int d = 0; d < width; d++)
        {
            row[d] = x[b, t, h, d];
            sumOfSquares += row[d] * row[d];
        }
        if (l2Norm)
        {
            double norm = Math.Sqrt(sumOfSquares + 1e-6); // fla's l2norm: x / sqrt(Σx² + 1e-6)
            for (int d = 0; d < width; d++)
            {
                row[d] /= norm;
            }
        }
        return row;
    }
}
