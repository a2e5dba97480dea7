using System.Globalization;
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

    /// <summary>The inputs (D, and with extras z, D per channel, initial_state).</summary>
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

    /// <summary>"chunk_size=Q".</summary>
    public string ChunkSize => "chunk_size=" + Chunk.ToString(CultureInfo.InvariantCulture);

    /// <summary>Whether the tensor has the T axis (x, dt, B, C, z).</summary>
    public static bool HasSteps(string name) => name is "x" or "dt" or "B" or "C" or "z";
}

/// <summary>ssd's laws: the variants agree, state passing, varlen, causality, dt_bias and softplus, bad input.</summary>
public sealed class SsdTests
{
    // Every variant sums the same products in double, in orders that differ by a few roundings per step; strong
    // decays only shrink terms (no division by a cumulative product), so 1e-12 relative holds (FORMS.md's f64 bound).
    private const double F64 = 1e-12;

    private static readonly Ssd Form = new();

    private static IReadOnlyDictionary<string, Tensor> Run(SsdCase c, string variant, IReadOnlyDictionary<string, Tensor> x) =>
        Form.Call(variant, x, c.ChunkSize);

    private static bool Agree(IReadOnlyDictionary<string, Tensor> a, IReadOnlyDictionary<string, Tensor> b) =>
        TestTensors.Close(a["o"], b["o"], F64) && TestTensors.Close(a["final_state"], b["final_state"], F64);

    /// <summary>The inputs at steps [start, start + length) of T; sequence n's own state row where given.</summary>
    private static Dictionary<string, Tensor> Steps(IReadOnlyDictionary<string, Tensor> x, int start, int length, int? sequence = null) =>
        x.Where(e => e.Key != "cu_seqlens").ToDictionary(e => e.Key, e =>
            SsdCase.HasSteps(e.Key) ? Slice(e.Value, 1, start, length)
            : e.Key == "initial_state" && sequence is { } n ? Slice(e.Value, 0, n, 1) : e.Value);

    [Law]
    public bool Quadratic_equals_chunked_equals_recurrent_for_any_chunk_size(SsdCase c)
    {
        var x = c.Inputs();
        var reference = Run(c, "recurrent", x);
        return Finite(reference["o"]) && Finite(reference["final_state"])
            && Agree(Run(c, "quadratic", x), reference) && Agree(Run(c, "chunked", x), reference);
    }

    [Law]
    public bool Running_in_two_parts_with_the_first_final_state_equals_one_run(SsdCase c)
    {
        var x = c.Inputs();
        int split = c.T == 0 ? 0 : c.Split % (c.T + 1);
        return Form.Variants.All(variant =>
        {
            var whole = Run(c, variant, x);
            var first = Run(c, variant, Steps(x, 0, split));
            var second = Steps(x, split, c.T - split);
            second["initial_state"] = first["final_state"];
            var rest = Run(c, variant, second);
            return TestTensors.Close(Concat(first["o"], rest["o"], 1), whole["o"], F64)
                && TestTensors.Close(rest["final_state"], whole["final_state"], F64);
        });
    }

    [Law]
    public bool Varlen_equals_separate_runs(SsdCase c)
    {
        int cut = c.T == 0 ? 0 : c.Split % (c.T + 1);
        var x = c.Inputs(batch: 1, cuSeqlens: [0, cut, c.T]);
        // Each sequence is the same arithmetic either way; 1e-12 leaves room for vector kernels whose order may follow
        // a row's alignment on other machines.
        return Form.Variants.All(variant =>
        {
            var packed = Run(c, variant, x);
            return new[] { (0, cut), (cut, c.T - cut) }.Select((part, n) =>
            {
                var alone = Run(c, variant, Steps(x, part.Item1, part.Item2, n));
                return TestTensors.Close(Slice(packed["o"], 1, part.Item1, part.Item2), alone["o"], F64)
                    && TestTensors.Close(Slice(packed["final_state"], 0, n, 1), alone["final_state"], F64);
            }).All(ok => ok);
        });
    }

    [Law]
    public bool Outputs_up_to_t_ignore_inputs_after_t(SsdCase c)
    {
        var x = c.Inputs();
        int t = c.T == 0 ? 0 : c.Split % c.T;
        var random = new Random(c.Seed + 1);
        var changed = x.ToDictionary(e => e.Key, e => SsdCase.HasSteps(e.Key) && e.Key != "dt" ? ChangedAfter(e.Value, 1, t + 1, random) : e.Value);
        changed["dt"] = ChangedAfter(x["dt"], 1, t + 1, random); // still positive
        // Steps up to t read nothing after it: the same arithmetic on the same numbers, bit for bit.
        return Form.Variants.All(variant => SamePrefix(Run(c, variant, x)["o"], Run(c, variant, changed)["o"], 1, t + 1));
    }

    [Law]
    public bool Softplus_of_dt_plus_dt_bias_is_the_step_size(SsdCase c)
    {
        // Held to torch's softplus written out here (threshold 20), not to the form's own: the same Δ to a few ulps
        // (log of 1 + e^z against log1p), which the outputs carry to well within 1e-12.
        var x = c.Inputs();
        var bias = TestTensors.Normal(new Random(c.Seed), 1, c.H);
        var raw = TestTensors.Normal(new Random(c.Seed + 2), 3, x["dt"].ShapeArray());
        var stepped = raw.Clone();
        for (int i = 0; i < stepped.Length; i++)
        {
            double z = raw.Data[i] + bias.Data[i % c.H];
            stepped.Data[i] = z > 20 ? z : Math.Log(1 + Math.Exp(z));
        }
        var viaBias = new Dictionary<string, Tensor>(x) { ["dt"] = raw, ["dt_bias"] = bias };
        var direct = new Dictionary<string, Tensor>(x) { ["dt"] = stepped };
        return TestTensors.Close(Form.Call("chunked", viaBias, c.ChunkSize, "dt_softplus=true")["o"], Form.Call("recurrent", direct)["o"], F64);
    }

    [Fact]
    public void Groups_not_dividing_heads_and_a_chunk_size_below_one_are_bad_input()
    {
        var x = Tensor.Zeros(1, 4, 3, 2);
        var dt = Tensor.Zeros(1, 4, 3);
        Dictionary<string, Tensor> Inputs(Tensor bc) => new() { ["x"] = x, ["dt"] = dt, ["A"] = Tensor.Zeros(3), ["B"] = bc, ["C"] = bc };
        var groups = Assert.Throws<InputException>(() => Form.Call("recurrent", Inputs(Tensor.Zeros(1, 4, 2, 2))));
        Assert.Contains("G = 2", groups.Message, StringComparison.Ordinal);
        var chunk = Assert.Throws<InputException>(() => Form.Call("chunked", Inputs(Tensor.Zeros(1, 4, 1, 2)), "chunk_size=0"));
        Assert.Contains("chunk_size", chunk.Message, StringComparison.Ordinal);
    }
}
