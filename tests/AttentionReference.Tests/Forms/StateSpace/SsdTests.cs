using AttentionReference.Forms.GatedLinear;
using AttentionReference.Forms.StateSpace;
using AttentionReference.Golden.Cases;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;
using static AttentionReference.Tests.Forms.StateSpace.StateSpaceTensors;

namespace AttentionReference.Tests.Forms.StateSpace;

/// <summary>A random ssd problem: shapes, chunk size (often not dividing T), step regime, options, split point, seed.</summary>
public sealed record SsdCase(int B, int T, int H, int P, int G, int N, int Chunk, StepRegime Regime, bool Extras, int Split, int Seed)
{
    public static Arbitrary<SsdCase> Arbitrary { get; } =
        (from b in Gen.Choose(1, 2)
         from t in Gen.Choose(0, 20)
         from g in Gen.Choose(1, 2)
         from ratio in Gen.Choose(1, 2)
         from p in Gen.Choose(1, 3)
         from n in Gen.Choose(1, 4)
         from chunk in Gen.Choose(1, 22)
         from regime in Gen.Elements(StepRegime.Mild, StepRegime.Strong, StepRegime.Mixed)
         from extras in Gen.Elements(false, true)
         from split in Gen.Choose(0, 1000)
         from seed in Gen.Choose(0, int.MaxValue)
         select new SsdCase(b, t, g * ratio, p, g, n, chunk, regime, extras, split, seed)).ToArbitrary();

    /// <summary>The inputs (D, and with extras z, dt_bias with softplus, D per channel, initial_state).</summary>
    public Dictionary<string, Tensor> Inputs(int batch = 0, int[]? cuSeqlens = null)
    {
        var random = new Random(Seed);
        var shape = new StateSpaceCases.SsdShape(batch == 0 ? B : batch, T, H, P, G, N) { Extras = Extras, CuSeqlens = cuSeqlens };
        var inputs = StateSpaceCases.SsdInputs(Source(random), shape, softplus: false);
        if (Extras)
        {
            inputs.Remove("dt_bias"); // Δ is drawn directly here, so that the regimes hold; softplus has its own law
        }
        Tensor a = inputs["A"];
        Steps(inputs["dt"], i => Math.Abs(a.Data[i % H]), Regime, random);
        return inputs;
    }

    public static SsdOptions Options(Dictionary<string, Tensor> x) => new()
    {
        D = x.GetValueOrDefault("D"),
        Z = x.GetValueOrDefault("z"),
        DtBias = x.GetValueOrDefault("dt_bias"),
        InitialState = x.GetValueOrDefault("initial_state"),
        CuSeqlens = x.GetValueOrDefault("cu_seqlens"),
    };
}

public sealed class SsdTests
{
    // Every variant sums the same products in double, in orders that differ by a few roundings per step; strong
    // decays only shrink terms (no division by a cumulative product), so 1e-12 relative holds (FORMS.md's f64 bound).
    private const double F64 = 1e-12;

    private static readonly string[] FastVariants = ["quadratic", "chunked"];
    private static readonly string[] AllVariants = ["recurrent", "quadratic", "chunked"];

    private static StateResult Run(string variant, Dictionary<string, Tensor> x, int chunk, SsdOptions? options = null)
    {
        options ??= SsdCase.Options(x);
        return variant switch
        {
            "quadratic" => Ssd.Quadratic(x["x"], x["dt"], x["A"], x["B"], x["C"], options),
            "chunked" => Ssd.Chunked(x["x"], x["dt"], x["A"], x["B"], x["C"], chunk, options),
            _ => Ssd.Recurrent(x["x"], x["dt"], x["A"], x["B"], x["C"], options),
        };
    }

    [Fact]
    public void Quadratic_equals_chunked_equals_recurrent_for_any_chunk_size() =>
        PropertyRuns.Check(Prop.ForAll(SsdCase.Arbitrary, c =>
        {
            var x = c.Inputs();
            var reference = Run("recurrent", x, 0);
            return Finite(reference.O) && Finite(reference.FinalState)
                && FastVariants.All(variant =>
                {
                    var r = Run(variant, x, c.Chunk);
                    return TestTensors.Close(r.O, reference.O, F64) && TestTensors.Close(r.FinalState, reference.FinalState, F64);
                });
        }));

    [Fact]
    public void Ssd_is_simple_gla_with_q_C_k_dt_B_v_x_g_dt_A_scale_1_and_the_state_transposed() =>
        PropertyRuns.Check(Prop.ForAll(SsdCase.Arbitrary, c =>
        {
            var x = c.Inputs();
            var (b, t) = (x["x"].Dim(0), c.T);
            // q = C and k = Δ·B spread from groups to heads, v = x, g = Δ·A
            var q = Tensor.Zeros(b, t, c.H, c.N);
            var k = Tensor.Zeros(b, t, c.H, c.N);
            var g = Tensor.Zeros(b, t, c.H);
            for (int i = 0; i < q.Length; i++)
            {
                int[] at = q.IndexOf(i); // [b, t, h, n]
                int group = at[2] / (c.H / c.G);
                double dt = x["dt"][at[0], at[1], at[2]];
                q.Data[i] = x["C"][at[0], at[1], group, at[3]];
                k.Data[i] = dt * x["B"][at[0], at[1], group, at[3]];
                g.Data[g.Offset(at[0], at[1], at[2])] = dt * x["A"].Data[at[2]];
            }
            Tensor? initial = x.GetValueOrDefault("initial_state") is { } h0 ? Transposed(h0) : null;
            var glaInputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = x["x"], ["g"] = g };
            if (initial is not null)
            {
                glaInputs["initial_state"] = initial;
            }
            var gla = new SimpleGla().Call("recurrent", glaInputs, "scale=1");
            var ssd = Run("chunked", x, c.Chunk, new SsdOptions { InitialState = x.GetValueOrDefault("initial_state") });
            return TestTensors.Close(ssd.O, gla["o"], F64) && TestTensors.Close(Transposed(ssd.FinalState), gla["final_state"], F64);
        }));

    [Fact]
    public void Running_in_two_parts_with_the_first_final_state_equals_one_run() =>
        PropertyRuns.Check(Prop.ForAll(SsdCase.Arbitrary, c =>
        {
            var x = c.Inputs();
            int split = c.T == 0 ? 0 : c.Split % (c.T + 1);
            Dictionary<string, Tensor> Part(int start, int length) => x.ToDictionary(e => e.Key, e =>
                e.Key is "x" or "dt" or "B" or "C" or "z" ? Slice(e.Value, 1, start, length) : e.Value);
            var whole = Run("chunked", x, c.Chunk);
            var first = Run("chunked", Part(0, split), c.Chunk);
            var second = Part(split, c.T - split);
            second["initial_state"] = first.FinalState;
            var rest = Run("chunked", second, c.Chunk);
            return TestTensors.Close(Concat(first.O, rest.O, 1), whole.O, F64) && TestTensors.Close(rest.FinalState, whole.FinalState, F64);
        }));

    [Fact]
    public void Varlen_equals_separate_runs() =>
        PropertyRuns.Check(Prop.ForAll(SsdCase.Arbitrary, c =>
        {
            int cut = c.T == 0 ? 0 : c.Split % (c.T + 1);
            var x = c.Inputs(batch: 1, cuSeqlens: [0, cut, c.T]);
            var packed = Run("chunked", x, c.Chunk);
            return new[] { (0, cut), (cut, c.T - cut) }.Select((part, n) =>
            {
                var single = x.Where(e => e.Key != "cu_seqlens").ToDictionary(e => e.Key, e =>
                    e.Key is "x" or "dt" or "B" or "C" or "z" ? Slice(e.Value, 1, part.Item1, part.Item2)
                    : e.Key == "initial_state" ? Slice(e.Value, 0, n, 1) : e.Value);
                var alone = Run("recurrent", single, 0);
                return TestTensors.Close(Slice(packed.O, 1, part.Item1, part.Item2), alone.O, F64)
                    && TestTensors.Close(Slice(packed.FinalState, 0, n, 1), alone.FinalState, F64);
            }).All(ok => ok);
        }));

    [Fact]
    public void Outputs_up_to_t_ignore_inputs_after_t() =>
        PropertyRuns.Check(Prop.ForAll(SsdCase.Arbitrary, c =>
        {
            var x = c.Inputs();
            int t = c.T == 0 ? 0 : c.Split % c.T;
            var random = new Random(c.Seed + 1);
            var changed = x.ToDictionary(e => e.Key, e =>
                e.Key is "x" or "B" or "C" or "z" ? ChangedAfter(e.Value, 1, t + 1, random) : e.Value);
            changed["dt"] = ChangedAfter(x["dt"], 1, t + 1, random); // still positive
            return AllVariants.All(variant =>
                SamePrefix(Run(variant, x, c.Chunk).O, Run(variant, changed, c.Chunk).O, 1, t + 1));
        }));

    [Fact]
    public void Softplus_of_dt_plus_dt_bias_is_the_step_size() =>
        PropertyRuns.Check(Prop.ForAll(SsdCase.Arbitrary, c =>
        {
            var x = c.Inputs();
            var bias = TestTensors.Normal(new Random(c.Seed), 1, c.H);
            var raw = TestTensors.Normal(new Random(c.Seed + 2), 3, x["dt"].ShapeArray());
            var stepped = raw.Clone();
            for (int i = 0; i < stepped.Length; i++)
            {
                double z = raw.Data[i] + bias.Data[i % c.H];
                stepped.Data[i] = z > 20 ? z : Math.Log(1 + Math.Exp(z)); // torch's softplus, threshold 20
            }
            var withSoftplus = SsdCase.Options(x) with { DtBias = bias, DtSoftplus = true };
            var viaOptions = Ssd.Chunked(x["x"], raw, x["A"], x["B"], x["C"], c.Chunk, withSoftplus);
            var direct = Ssd.Recurrent(x["x"], stepped, x["A"], x["B"], x["C"], SsdCase.Options(x));
            return TestTensors.Close(viaOptions.O, direct.O, F64);
        }));

    [Fact]
    public void Groups_not_dividing_heads_and_a_chunk_size_below_one_are_bad_input()
    {
        var x = Tensor.Zeros(1, 4, 3, 2);
        var dt = Tensor.Zeros(1, 4, 3);
        var bc = Tensor.Zeros(1, 4, 2, 2);
        var groups = Assert.Throws<InputException>(() => Ssd.Recurrent(x, dt, Tensor.Zeros(3), bc, bc));
        Assert.Contains("G = 2", groups.Message, StringComparison.Ordinal);
        var chunk = Assert.Throws<InputException>(() => Ssd.Chunked(x, dt, Tensor.Zeros(3), Tensor.Zeros(1, 4, 1, 2), Tensor.Zeros(1, 4, 1, 2), 0));
        Assert.Contains("chunk_size", chunk.Message, StringComparison.Ordinal);
    }

    /// <summary>[S,H,P,N] ↔ [S,H,N,P].</summary>
    private static Tensor Transposed(Tensor h)
    {
        var result = Tensor.Zeros(h.Dim(0), h.Dim(1), h.Dim(3), h.Dim(2));
        for (int i = 0; i < h.Length; i++)
        {
            int[] at = h.IndexOf(i);
            result.Data[result.Offset(at[0], at[1], at[3], at[2])] = h.Data[i];
        }
        return result;
    }
}
