using AttentionReference.Forms;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.Delta;

/// <summary>
/// The gradient laws of every form of the delta-rule family (issue #19), in every variant: the definition's gradients
/// equal central finite differences; every variant's backward equals the definition's; a run split in two with the state
/// gradient passed back equals one run; varlen equals separate runs; and the edge cases engines get wrong (log gates down
/// to −20 per step, T = 1, a chunk longer than the sequence, a last partial chunk, empty varlen sequences).
/// </summary>
public abstract partial class DeltaFormLaws
{
    // The L2 norm of a single channel is x / √(x² + 1e-6), a step of height 2 and width 1e-3: its derivatives grow as
    // powers of 1/|x|, beyond the finite-difference bound's assumption that |L'''| is of the order of L
    // (Support/FiniteDifferences.cs), so a case with K = 1 is checked without the norm (the chain rule through it is
    // checked at K ≥ 3).
    [Law(50)]
    public bool Gradients_of_the_definition_equal_central_finite_differences(DeltaCase c)
    {
        c = Fit(c.K == 1 ? c with { L2Norm = false } : c);
        var inputs = GradientInputs(c);
        var random = new Random(c.Seed);
        var outputs = Forward("recurrent", c, inputs);
        var cotangents = DeltaLaws.Cotangents(random, outputs, withoutState: c.Seed % 4 == 0);
        var gradients = Gradients("recurrent", c, new Dictionary<string, Tensor>(inputs).Concat(cotangents).ToDictionary());
        var (_, magnitude) = FiniteDifferences.Pairing(cotangents, outputs);
        foreach (var (name, x) in inputs)
        {
            Tensor u = TestTensors.Normal(random, 1, x.ShapeArray());
            double L(double epsilon) => FiniteDifferences.Pairing(cotangents,
                Forward("recurrent", c, new Dictionary<string, Tensor>(inputs) { [name] = FiniteDifferences.Moved(x, u, epsilon) })).Value;
            double finite = (L(FiniteDifferences.Step) - L(-FiniteDifferences.Step)) / (2 * FiniteDifferences.Step);
            double analytic = FiniteDifferences.Dot(gradients["d" + name], u);
            if (!(Math.Abs(finite - analytic) <= FiniteDifferences.Tolerance(magnitude, analytic)))
            {
                throw new InvalidOperationException($"{Form.Name} d{name}: finite difference {finite:R}, gradient {analytic:R}, magnitude {magnitude:E2}");
            }
        }
        return true;
    }

    [Law(50)]
    public bool Backward_of_every_variant_equals_the_backward_of_the_definition(DeltaCase c)
    {
        c = Fit(c);
        var inputs = WithCotangents(c, GradientInputs(c));
        var expected = Gradients("recurrent", c, inputs);
        return Form.Variants.All(v => DeltaLaws.SameGradients(Gradients(v, c, inputs), expected));
    }

    [Law(50)]
    public bool Backward_in_two_parts_with_the_state_gradient_passed_back_equals_one_run(DeltaCase c)
    {
        c = Fit(c);
        var inputs = WithCotangents(c, GradientInputs(c));
        int split = new Random(c.Seed).Next(0, c.T + 1);
        return Form.Variants.All(variant =>
        {
            // Forward over the first part to reach the second part's initial state, backward over the second part from
            // the given dfinal_state, then backward over the first part from the second part's dinitial_state.
            var whole = Gradients(variant, c, inputs);
            var first = SliceTime(inputs, 0, split);
            var second = SliceTime(inputs, split, c.T - split);
            first.Remove("dfinal_state");
            second["initial_state"] = Forward(variant, c, first.Where(p => p.Key != "do").ToDictionary())["final_state"];
            var secondGradients = Gradients(variant, c, second);
            first["dfinal_state"] = secondGradients["dinitial_state"];
            var firstGradients = Gradients(variant, c, first);
            return whole.All(p => TestTensors.Close(
                p.Key == "dinitial_state" ? firstGradients[p.Key] : TimeAxis.Concat(firstGradients[p.Key], secondGradients[p.Key]),
                p.Value, DeltaLaws.SameGradientsInDouble));
        });
    }

    [Law(50)]
    public bool Backward_varlen_equals_separate_runs(DeltaCase c)
    {
        c = Fit(c);
        var random = new Random(c.Seed);
        int count = random.Next(1, 4);
        return VarlenBackward(c, [0, .. Enumerable.Range(0, count - 1).Select(_ => random.Next(0, c.T + 1)).Order(), c.T]);
    }

    // An empty sequence has no step: its state gradient passes through untouched (dinitial_state = dfinal_state, zero
    // where no dfinal_state is given), and it leaves its neighbours' gradients as separate runs give them.
    [Law(50)]
    public bool Backward_varlen_with_empty_sequences_equals_separate_runs(DeltaCase c)
    {
        c = Fit(c);
        int cut = new Random(c.Seed).Next(0, c.T + 1);
        return VarlenBackward(c, [0, 0, cut, cut, c.T]);
    }

    // Log gates down to −20 per step: a chunk of 17 steps decays by up to e^−340. The backward pass takes every decay as
    // exp of a difference of log sums (≤ 0), never as a quotient, so nothing overflows; tiny factors are exact to rounding.
    [Law(50)]
    public bool Backward_with_log_gates_down_to_minus_20_stays_finite_and_every_variant_equals_the_definition(DeltaCase c)
    {
        if (!HasDecay)
        {
            return true;
        }
        c = Fit(c.StrongGates());
        var inputs = WithCotangents(c, GradientInputs(c));
        var saturated = inputs.ToDictionary(p => p.Key, p => p.Key is "g" or "gk" ? Filled(p.Value, -20) : p.Value);
        return new[] { inputs, saturated }.All(x =>
        {
            var expected = Gradients("recurrent", c, x);
            return expected.Values.All(g => g.Data.All(double.IsFinite))
                && Form.Variants.All(v => DeltaLaws.SameGradients(Gradients(v, c, x), expected));
        });
    }

    [Law(50)]
    public bool Backward_at_the_chunk_edges_equals_the_definition(DeltaCase c)
    {
        c = Fit(c);
        int longer = Math.Max(c.T, 3);
        DeltaCase[] edges =
        [
            c with { T = 1 },                           // one step
            c with { Chunk = c.T + c.Chunk },           // a chunk longer than the sequence
            c with { T = longer, Chunk = longer - 1 },  // a last partial chunk of one step
        ];
        return edges.All(e =>
        {
            var inputs = WithCotangents(e, GradientInputs(e));
            var expected = Gradients("recurrent", e, inputs);
            return Form.Variants.All(v => DeltaLaws.SameGradients(Gradients(v, e, inputs), expected));
        });
    }

    // ---- helpers ----

    /// <summary>The inputs the form reads under their contract names (rwkv7's w as gk), with the case's initial state if any.</summary>
    private Dictionary<string, Tensor> GradientInputs(DeltaCase c)
    {
        var all = c.All();
        var inputs = DeltaLaws.Pick(all, Names).ToDictionary(p => ContractName(p.Key), p => p.Value);
        if (c.WithInitialState)
        {
            inputs["initial_state"] = all["initial_state"];
        }
        return inputs;
    }

    private string ContractName(string name) =>
        ((Form)Form).Contract.Inputs.Single(s => s.Name == name || (s.Aliases?.Contains(name) ?? false)).Name;

    /// <summary>The inputs with random cotangents of the definition's outputs (dfinal_state left out for one seed in four).</summary>
    private Dictionary<string, Tensor> WithCotangents(DeltaCase c, Dictionary<string, Tensor> inputs)
    {
        var cotangents = DeltaLaws.Cotangents(new Random(c.Seed + 2), Forward("recurrent", c, inputs), withoutState: c.Seed % 4 == 0);
        return inputs.Concat(cotangents).ToDictionary();
    }

    private IReadOnlyDictionary<string, Tensor> Forward(string variant, DeltaCase c, IReadOnlyDictionary<string, Tensor> inputs) =>
        Form.Call(variant, inputs, DeltaLaws.Parameters(Form, c));

    private IReadOnlyDictionary<string, Tensor> Gradients(string variant, DeltaCase c, IReadOnlyDictionary<string, Tensor> inputs) =>
        DeltaLaws.Gradients(Form, variant, c, inputs);

    /// <summary>Steps [start, start + length) of every tensor with a time axis; the states and cu_seqlens as they are.</summary>
    private static Dictionary<string, Tensor> SliceTime(IReadOnlyDictionary<string, Tensor> inputs, int start, int length) =>
        inputs.ToDictionary(p => p.Key, p => HasTimeAxis(p.Key) ? TimeAxis.Slice(p.Value, start, length) : p.Value);

    private static bool HasTimeAxis(string name) => name is not ("initial_state" or "dfinal_state" or "dinitial_state" or "cu_seqlens");

    private static Tensor Filled(Tensor x, double value) => new(x.ShapeArray(), Enumerable.Repeat(value, x.Length).ToArray());

    /// <summary>
    /// Batch entry 0 cut at <paramref name="cuts"/> into sequences, each with its own initial state and dfinal_state row,
    /// packed with cu_seqlens: every variant's gradients equal separate runs', bit for bit (the same arithmetic on the same
    /// numbers, and a group's dq, dk summed over its value heads in the same order).
    /// </summary>
    private bool VarlenBackward(DeltaCase c, int[] cuts)
    {
        var random = new Random(c.Seed + 1);
        int count = cuts.Length - 1;
        bool withoutState = c.Seed % 4 == 0;
        var packed = GradientInputs(c).Where(p => HasTimeAxis(p.Key)).ToDictionary(p => p.Key, p => TimeAxis.Entry(p.Value, 0));
        packed["initial_state"] = TestTensors.Normal(random, 1, count, c.HV, c.K, c.V);
        packed["cu_seqlens"] = new Tensor([cuts.Length], cuts.Select(x => (double)x).ToArray(), DType.I64);
        packed["do"] = TestTensors.Normal(random, 1, 1, c.T, c.HV, c.V);
        if (!withoutState)
        {
            packed["dfinal_state"] = TestTensors.Normal(random, 1, count, c.HV, c.K, c.V);
        }
        return Form.Variants.All(variant =>
        {
            var together = Gradients(variant, c, packed);
            for (int n = 0; n < count; n++)
            {
                int length = cuts[n + 1] - cuts[n];
                var alone = SliceTime(packed, cuts[n], length);
                alone.Remove("cu_seqlens");
                alone["initial_state"] = TimeAxis.Entry(packed["initial_state"], n);
                if (!withoutState)
                {
                    alone["dfinal_state"] = TimeAxis.Entry(packed["dfinal_state"], n);
                }
                var separate = Gradients(variant, c, alone);
                Tensor stateGradient = TimeAxis.Entry(together["dinitial_state"], n);
                if (length == 0 && !stateGradient.Data.SequenceEqual(withoutState ? new double[stateGradient.Length] : alone["dfinal_state"].Data))
                {
                    return false;
                }
                if (!separate.All(p => (p.Key == "dinitial_state" ? stateGradient : TimeAxis.Slice(together[p.Key], cuts[n], length)).Data.SequenceEqual(p.Value.Data)))
                {
                    return false;
                }
            }
            return true;
        });
    }
}
