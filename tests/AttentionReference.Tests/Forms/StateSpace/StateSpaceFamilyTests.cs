using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Forms.GatedLinear;
using AttentionReference.Forms.StateSpace;
using AttentionReference.Golden;
using AttentionReference.IO;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using static AttentionReference.Tests.Forms.StateSpace.StateSpaceTensors;

namespace AttentionReference.Tests.Forms.StateSpace;

/// <summary>
/// The laws the state-space family shares: every golden holds in every variant of its form, and the reductions between
/// the forms (mamba with one decay rate per channel is ssd with head dim 1; ssd is simple_gla; h3 with one channel per
/// head and the identity shift is q times s4d of k·v).
/// </summary>
public sealed class StateSpaceFamilyTests
{
    // Two forms (or variants) computing the same sums in double along different code paths, a few roundings per step
    // with decays that only shrink terms; the fft variant within its roundoff log2(n)·ε·‖K‖‖u‖, far below this at
    // T ≤ 20: 1e-12 relative (FORMS.md's f64 bound).
    private const double F64 = 1e-12;

    public static TheoryData<string> Goldens { get; } =
        new(GoldenCases.All.Where(c => c.Form is "s4d" or "h3" or "mamba" or "ssd").Select(c => c.Id));

    [Theory]
    [MemberData(nameof(Goldens))]
    public void Every_variant_reproduces_the_golden_outputs(string id)
    {
        TensorFile golden = TensorFiles.Read(RepoPaths.Of("golden", id + ".safetensors"));
        IForm form = FormCatalog.Find(id.Split('/')[0]);
        var inputs = golden.Metadata["inputs"].Split(',').ToDictionary(n => n, n => golden[n]);
        // mamba's scan and ssd's chunked variant at several block/chunk sizes, one of them past T
        string? size = form.Name switch { "mamba" => "block_size", "ssd" => "chunk_size", _ => null };
        foreach (string variant in form.Variants)
        {
            foreach (int s in size is null ? [0] : new[] { 1, 2, 5, 64 })
            {
                var overrides = new Dictionary<string, string>();
                if (size is not null)
                {
                    overrides[size] = s.ToString(CultureInfo.InvariantCulture);
                }
                var result = FormRunner.Run(form, inputs, golden.Metadata, new RunOptions { Variant = variant, Overrides = overrides });
                foreach (string output in golden.Metadata["outputs"].Split(','))
                {
                    TestTensors.AssertClose(result.Outputs[output], golden[output], F64, $"{id} {variant} {size}={s} {output}");
                }
            }
        }
    }

    [Law]
    public bool With_A_constant_over_the_state_and_shared_B_C_mamba_is_ssd_with_head_dim_1(MambaCase c)
    {
        // channel d of mamba = head h of ssd with P = 1, G = 1: x_t = u_t, dt_t = delta_t, A_h = A_d·1, B_t, C_t
        // shared; D, z, delta_bias/dt_bias, softplus and the initial state carry over; layouts [B,D,L] ↔ [B,T,H,1].
        var x = (c with { Kind = 1 }).Inputs();
        var rate = x["A"].Clone();
        for (int i = 0; i < rate.Length; i++)
        {
            rate.Data[i] = x["A"].Data[i - (i % c.N)]; // A_dn = A_d0 for every n
        }
        x["A"] = rate;
        Tensor TimeMajor(Tensor t) => Reorder(t, [t.Dim(0), t.Dim(2), t.Dim(1), 1], at => [at[0], at[2], at[1], 0]);
        Tensor OneGroup(Tensor t) => Reorder(t, [t.Dim(0), t.Dim(2), 1, t.Dim(1)], at => [at[0], at[2], 0, at[1]]);
        var ssdInputs = new Dictionary<string, Tensor>
        {
            ["x"] = TimeMajor(x["u"]),
            ["dt"] = TimeMajor(x["delta"]).Reshape(c.B, c.L, c.D),
            ["A"] = new Tensor([c.D], Enumerable.Range(0, c.D).Select(d => rate[d, 0]).ToArray()),
            ["B"] = OneGroup(x["B"]),
            ["C"] = OneGroup(x["C"]),
        };
        foreach (var (name, ssdName) in new[] { ("D", "D"), ("delta_bias", "dt_bias") })
        {
            if (x.TryGetValue(name, out Tensor? t))
            {
                ssdInputs[ssdName] = t;
            }
        }
        if (x.TryGetValue("z", out Tensor? z))
        {
            ssdInputs["z"] = TimeMajor(z);
        }
        if (x.TryGetValue("initial_state", out Tensor? h0))
        {
            ssdInputs["initial_state"] = h0.Reshape(c.B, c.D, 1, c.N);
        }
        var ssd = new Ssd();
        string softplus = c.Softplus ? "true" : "false";
        return new Mamba().Variants.All(variant =>
        {
            var mamba = new Mamba().Call(variant, x, c.Parameters());
            return ssd.Variants.All(ssdVariant =>
            {
                var other = ssd.Call(ssdVariant, ssdInputs, "chunk_size=" + c.BlockSize.ToString(CultureInfo.InvariantCulture), "dt_softplus=" + softplus);
                return TestTensors.Close(TimeMajor(mamba["o"]), other["o"], F64)
                    && TestTensors.Close(mamba["final_state"].Reshape(c.B, c.D, 1, c.N), other["final_state"], F64);
            });
        });
    }

    [Law]
    public bool Ssd_is_simple_gla_with_q_C_k_dt_B_v_x_g_dt_A_scale_1_and_the_state_transposed(SsdCase c)
    {
        var x = c.Inputs();
        x.Remove("D"); // simple_gla has no skip or gate
        x.Remove("z");
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
        var glaInputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = x["x"], ["g"] = g };
        if (x.TryGetValue("initial_state", out Tensor? h0))
        {
            glaInputs["initial_state"] = Transposed(h0);
        }
        var gla = new SimpleGla().Call("recurrent", glaInputs, "scale=1");
        return new Ssd().Variants.All(variant =>
        {
            var ssd = new Ssd().Call(variant, x, c.ChunkSize);
            return TestTensors.Close(ssd["o"], gla["o"], F64) && TestTensors.Close(Transposed(ssd["final_state"]), gla["final_state"], F64);
        });
    }

    [Law]
    public bool With_head_dim_1_and_the_identity_shift_h3_is_q_times_s4d_of_k_times_v(DiagonalCase c)
    {
        var x = (c with { D = 1 }).H3Inputs();
        var taps = Tensor.Zeros(c.H, 1, c.M);
        for (int h = 0; h < c.H; h++)
        {
            taps.Data[h * c.M] = 1; // k̃_t = k_t
        }
        var h3Inputs = new Dictionary<string, Tensor>(x) { ["shift_kernel"] = taps };
        h3Inputs.Remove("shift_D");
        var s4dInputs = x.Where(e => e.Key is not ("q" or "k" or "v" or "shift_kernel" or "shift_D")).ToDictionary(e => e.Key, e => e.Value);
        s4dInputs["u"] = new Tensor([c.B, c.T, c.H], x["k"].Data.Zip(x["v"].Data, (k, v) => k * v).ToArray());
        var s4d = new S4d().Call("recurrent", s4dInputs, c.Parameters)["o"];
        var expected = new Tensor([c.B, c.T, c.H, 1], x["q"].Data.Zip(s4d.Data, (q, y) => q * y).ToArray());
        return new H3().Variants.All(variant => TestTensors.Close(new H3().Call(variant, h3Inputs, c.Parameters)["o"], expected, F64));
    }

    // The reductions' gradients: two forms' backward passes sum the same terms in double in other orders, and the
    // chain rule through the map between them adds a product or a sum over heads per term (StatefulGradientLaws's bound).
    private const double SameGradients = StateSpaceGradients.SameGradientsInDouble;

    [Law(50)]
    public bool Ssd_gradients_are_simple_glas_through_q_C_k_dt_B_v_x_g_dt_A(SsdCase c)
    {
        // With q = C, k = Δ·B, v = x, g = Δ·A (scale 1, the state transposed), the chain rule gives
        //   dC = Σ_{h in the group} dq,  dB = Σ_h Δ dk,  dx = dv,  ddt = Σ_n dk B + A dg,  dA = Σ_{b,t} Δ dg,
        //   dinitial_state = dh0 transposed.
        var x = c.Inputs();
        x.Remove("D"); // simple_gla has no skip or gate
        x.Remove("z");
        var random = new Random(c.Seed + 3);
        x["do"] = TestTensors.Normal(random, 1, x["x"].ShapeArray());
        x["dfinal_state"] = TestTensors.Normal(random, 1, new Ssd().Call("recurrent", x)["final_state"].ShapeArray());
        var (b, t) = (x["x"].Dim(0), c.T);
        int ratio = c.H / c.G;
        var q = Tensor.Zeros(b, t, c.H, c.N);
        var k = Tensor.Zeros(b, t, c.H, c.N);
        var g = Tensor.Zeros(b, t, c.H);
        for (int i = 0; i < q.Length; i++)
        {
            int[] at = q.IndexOf(i); // [b, t, h, n]
            double dt = x["dt"][at[0], at[1], at[2]];
            q.Data[i] = x["C"][at[0], at[1], at[2] / ratio, at[3]];
            k.Data[i] = dt * x["B"][at[0], at[1], at[2] / ratio, at[3]];
            g.Data[g.Offset(at[0], at[1], at[2])] = dt * x["A"].Data[at[2]];
        }
        var glaInputs = new Dictionary<string, Tensor>
        {
            ["q"] = q, ["k"] = k, ["v"] = x["x"], ["g"] = g, ["do"] = x["do"], ["dfinal_state"] = Transposed(x["dfinal_state"]),
        };
        if (x.TryGetValue("initial_state", out Tensor? h0))
        {
            glaInputs["initial_state"] = Transposed(h0);
        }
        var gla = StateSpaceGradients.Gradients(new SimpleGla(), "recurrent", glaInputs, "scale=1");
        var expected = new Dictionary<string, Tensor>
        {
            ["dx"] = gla["dv"], ["dC"] = Tensor.Zeros(x["C"].ShapeArray()), ["dB"] = Tensor.Zeros(x["B"].ShapeArray()),
            ["ddt"] = Tensor.Zeros(x["dt"].ShapeArray()), ["dA"] = Tensor.Zeros(c.H),
        };
        for (int i = 0; i < q.Length; i++)
        {
            int[] at = q.IndexOf(i);
            int[] grouped = [at[0], at[1], at[2] / ratio, at[3]];
            double dt = x["dt"][at[0], at[1], at[2]];
            expected["dC"].Data[expected["dC"].Offset(grouped)] += gla["dq"].Data[i];
            expected["dB"].Data[expected["dB"].Offset(grouped)] += dt * gla["dk"].Data[i];
            expected["ddt"].Data[g.Offset(at[0], at[1], at[2])] += gla["dk"].Data[i] * x["B"][grouped];
        }
        for (int i = 0; i < g.Length; i++)
        {
            int h = i % c.H;
            expected["ddt"].Data[i] += x["A"].Data[h] * gla["dg"].Data[i];
            expected["dA"].Data[h] += x["dt"].Data[i] * gla["dg"].Data[i];
        }
        if (h0 is not null)
        {
            expected["dinitial_state"] = Transposed(gla["dinitial_state"]);
        }
        return new Ssd().Variants.All(variant =>
        {
            var ssd = StateSpaceGradients.Gradients(new Ssd(), variant, x, c.ChunkSize);
            return ssd.Count == expected.Count && expected.All(p => TestTensors.Close(ssd[p.Key], p.Value, SameGradients));
        });
    }

    [Law(50)]
    public bool With_A_constant_over_the_state_and_shared_B_C_mambas_gradients_are_ssds_with_head_dim_1(MambaCase c)
    {
        // The forward law's map (channel d = head h, P = 1, G = 1) carries the gradients over one to one, except A: ssd's
        // A_h stands for mamba's A_dn at every n, so dA_h = Σ_n dA_dn.
        var x = (c with { Kind = 1 }).Inputs();
        for (int i = 0; i < x["A"].Length; i++)
        {
            x["A"].Data[i] = x["A"].Data[i - (i % c.N)];
        }
        var random = new Random(c.Seed + 3);
        x["do"] = TestTensors.Normal(random, 1, x["u"].ShapeArray());
        x["dfinal_state"] = TestTensors.Normal(random, 1, new Mamba().Call("recurrent", x, c.Parameters())["final_state"].ShapeArray());
        Tensor TimeMajor(Tensor t) => Reorder(t, [t.Dim(0), t.Dim(2), t.Dim(1), 1], at => [at[0], at[2], at[1], 0]);
        Tensor OneGroup(Tensor t) => Reorder(t, [t.Dim(0), t.Dim(2), 1, t.Dim(1)], at => [at[0], at[2], 0, at[1]]);
        var ssdInputs = new Dictionary<string, Tensor>
        {
            ["x"] = TimeMajor(x["u"]),
            ["dt"] = TimeMajor(x["delta"]).Reshape(c.B, c.L, c.D),
            ["A"] = new Tensor([c.D], Enumerable.Range(0, c.D).Select(d => x["A"][d, 0]).ToArray()),
            ["B"] = OneGroup(x["B"]),
            ["C"] = OneGroup(x["C"]),
            ["do"] = TimeMajor(x["do"]),
            ["dfinal_state"] = x["dfinal_state"].Reshape(c.B, c.D, 1, c.N),
        };
        foreach (var (name, ssdName) in new[] { ("D", "D"), ("delta_bias", "dt_bias") })
        {
            if (x.TryGetValue(name, out Tensor? t))
            {
                ssdInputs[ssdName] = t;
            }
        }
        if (x.TryGetValue("z", out Tensor? z))
        {
            ssdInputs["z"] = TimeMajor(z);
        }
        if (x.TryGetValue("initial_state", out Tensor? h0))
        {
            ssdInputs["initial_state"] = h0.Reshape(c.B, c.D, 1, c.N);
        }
        string[] ssdParameters = ["chunk_size=" + c.BlockSize.ToString(CultureInfo.InvariantCulture), "dt_softplus=" + (c.Softplus ? "true" : "false")];
        return new Mamba().Variants.All(variant =>
        {
            var mamba = StateSpaceGradients.Gradients(new Mamba(), variant, x, c.Parameters());
            var mapped = new Dictionary<string, Tensor>
            {
                ["dx"] = TimeMajor(mamba["du"]),
                ["ddt"] = TimeMajor(mamba["ddelta"]).Reshape(c.B, c.L, c.D),
                ["dA"] = new Tensor([c.D], Enumerable.Range(0, c.D).Select(d => Enumerable.Range(0, c.N).Sum(n => mamba["dA"][d, n])).ToArray()),
                ["dB"] = OneGroup(mamba["dB"]),
                ["dC"] = OneGroup(mamba["dC"]),
            };
            foreach (var (name, ssdName) in new[] { ("dD", "dD"), ("ddelta_bias", "ddt_bias") })
            {
                if (mamba.TryGetValue(name, out Tensor? t))
                {
                    mapped[ssdName] = t;
                }
            }
            if (mamba.TryGetValue("dz", out Tensor? dz))
            {
                mapped["dz"] = TimeMajor(dz);
            }
            if (mamba.TryGetValue("dinitial_state", out Tensor? dh0))
            {
                mapped["dinitial_state"] = dh0.Reshape(c.B, c.D, 1, c.N);
            }
            return new Ssd().Variants.All(ssdVariant =>
            {
                var ssd = StateSpaceGradients.Gradients(new Ssd(), ssdVariant, ssdInputs, ssdParameters);
                return ssd.Count == mapped.Count && mapped.All(p => TestTensors.Close(ssd[p.Key], p.Value, SameGradients));
            });
        });
    }

    [Law(50)]
    public bool With_head_dim_1_and_the_identity_shift_h3s_gradients_are_those_of_q_times_s4d_of_k_times_v(DiagonalCase c)
    {
        // o = q · s4d(u) with u = k v: dq = do · s4d(u); s4d's backward from the cotangent q·do gives du, then
        // dk = du v and dv = du k, and the diagonal SSM's parameters get s4d's gradients.
        var x = (c with { D = 1 }).H3Inputs();
        var taps = Tensor.Zeros(c.H, 1, c.M);
        for (int h = 0; h < c.H; h++)
        {
            taps.Data[h * c.M] = 1;
        }
        var h3Inputs = new Dictionary<string, Tensor>(x) { ["shift_kernel"] = taps, ["do"] = TestTensors.Normal(new Random(c.Seed + 3), 1, c.B, c.T, c.H, 1) };
        h3Inputs.Remove("shift_D");
        var s4dInputs = x.Where(e => e.Key is not ("q" or "k" or "v" or "shift_kernel" or "shift_D")).ToDictionary(e => e.Key, e => e.Value);
        s4dInputs["u"] = new Tensor([c.B, c.T, c.H], x["k"].Data.Zip(x["v"].Data, (k, v) => k * v).ToArray());
        var s4d = new S4d().Call("recurrent", s4dInputs, c.Parameters)["o"];
        s4dInputs["do"] = new Tensor([c.B, c.T, c.H], x["q"].Data.Zip(h3Inputs["do"].Data, (q, d) => q * d).ToArray());
        var s4dGradients = StateSpaceGradients.Gradients(new S4d(), "recurrent", s4dInputs, c.Parameters);
        Tensor du = s4dGradients["du"];
        var expected = s4dGradients.Where(p => p.Key != "du").ToDictionary(p => p.Key, p => p.Value);
        expected["dq"] = new Tensor([c.B, c.T, c.H, 1], h3Inputs["do"].Data.Zip(s4d.Data, (d, y) => d * y).ToArray());
        expected["dk"] = new Tensor([c.B, c.T, c.H, 1], du.Data.Zip(x["v"].Data, (g, v) => g * v).ToArray());
        expected["dv"] = new Tensor([c.B, c.T, c.H, 1], du.Data.Zip(x["k"].Data, (g, k) => g * k).ToArray());
        return new H3().Variants.All(variant =>
        {
            var h3 = StateSpaceGradients.Gradients(new H3(), variant, h3Inputs, c.Parameters);
            return expected.All(p => TestTensors.Close(h3[p.Key], p.Value, SameGradients));
        });
    }

    /// <summary>A copy of <paramref name="t"/> in <paramref name="shape"/>, each element moved to <paramref name="place"/>(its index).</summary>
    private static Tensor Reorder(Tensor t, int[] shape, Func<int[], int[]> place)
    {
        var result = Tensor.Zeros(shape);
        for (int i = 0; i < t.Length; i++)
        {
            result.Data[result.Offset(place(t.IndexOf(i)))] = t.Data[i];
        }
        return result;
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

/// <summary>
/// The laws every state-space form with a state and cu_seqlens satisfies (mamba, ssd), in every variant, written once
/// against the form's contract and run by each form's test class: state passing, varlen = separate runs, causality.
/// </summary>
/// <typeparam name="TCase">The form's case record.</typeparam>
public abstract partial class StatefulStateSpaceLaws<TCase>
{
    // The variants compute the same products in double in orders that differ by a few roundings per step; decays only
    // shrink terms, so 1e-12 relative holds (FORMS.md's f64 bound).
    protected const double F64 = 1e-12;

    /// <summary>The form under test.</summary>
    protected abstract IForm Form { get; }

    /// <summary>The case's inputs, for a batch of <paramref name="batch"/> entries (the case's own with 0), packed by <paramref name="cuSeqlens"/> where given.</summary>
    protected abstract Dictionary<string, Tensor> Inputs(TCase c, int batch = 0, int[]? cuSeqlens = null);

    /// <summary>The case's number of steps, its split point (any integer ≥ 0) and its seed.</summary>
    protected abstract (int Steps, int Split, int Seed) Sizes(TCase c);

    /// <summary>The axis of a tensor's steps (the outputs' included), or null for a tensor without steps.</summary>
    protected abstract int? StepAxis(string name, Tensor x);

    /// <summary>The outputs of <paramref name="variant"/> with the case's parameters.</summary>
    protected abstract IReadOnlyDictionary<string, Tensor> Run(TCase c, string variant, IReadOnlyDictionary<string, Tensor> x);

    /// <summary>o and final_state within <see cref="F64"/> of each other's.</summary>
    protected static bool Agree(IReadOnlyDictionary<string, Tensor> a, IReadOnlyDictionary<string, Tensor> b) =>
        TestTensors.Close(a["o"], b["o"], F64) && TestTensors.Close(a["final_state"], b["final_state"], F64);

    [Law]
    public bool Running_in_two_parts_with_the_first_final_state_equals_one_run(TCase c)
    {
        var x = Inputs(c);
        var (steps, split, _) = Sizes(c);
        split = steps == 0 ? 0 : split % (steps + 1);
        return Form.Variants.All(variant =>
        {
            var whole = Run(c, variant, x);
            var first = Run(c, variant, Steps(x, 0, split));
            var second = Steps(x, split, steps - split);
            second["initial_state"] = first["final_state"];
            var rest = Run(c, variant, second);
            return TestTensors.Close(Concat(first["o"], rest["o"], StepAxis("o", whole["o"])!.Value), whole["o"], F64)
                && TestTensors.Close(rest["final_state"], whole["final_state"], F64);
        });
    }

    [Law]
    public bool Varlen_equals_separate_runs(TCase c)
    {
        var (steps, split, _) = Sizes(c);
        int cut = steps == 0 ? 0 : split % (steps + 1);
        var x = Inputs(c, batch: 1, cuSeqlens: [0, cut, steps]);
        // Each sequence is the same arithmetic either way; 1e-12 leaves room for vector kernels whose order may follow
        // a row's alignment on other machines.
        return Form.Variants.All(variant =>
        {
            var packed = Run(c, variant, x);
            int axis = StepAxis("o", packed["o"])!.Value;
            return new[] { (0, cut), (cut, steps - cut) }.Select((part, n) =>
            {
                var alone = Run(c, variant, Steps(x, part.Item1, part.Item2, n));
                return TestTensors.Close(Slice(packed["o"], axis, part.Item1, part.Item2), alone["o"], F64)
                    && TestTensors.Close(Slice(packed["final_state"], 0, n, 1), alone["final_state"], F64);
            }).All(ok => ok);
        });
    }

    [Law]
    public bool Outputs_up_to_t_ignore_inputs_after_t(TCase c)
    {
        var x = Inputs(c);
        var (steps, split, seed) = Sizes(c);
        int t = steps == 0 ? 0 : split % steps;
        var random = new Random(seed + 1);
        // every input with steps moved after t (step sizes stay positive: ChangedAfter adds 1 to 2)
        var changed = x.ToDictionary(e => e.Key, e => StepAxis(e.Key, e.Value) is { } axis ? ChangedAfter(e.Value, axis, t + 1, random) : e.Value);
        // Steps up to t read nothing after it: the same arithmetic on the same numbers, bit for bit.
        return Form.Variants.All(variant =>
        {
            var before = Run(c, variant, x)["o"];
            return SamePrefix(before, Run(c, variant, changed)["o"], StepAxis("o", before)!.Value, t + 1);
        });
    }

    /// <summary>
    /// The inputs at steps [start, start + length) (an output's cotangent, "do", sliced as its output); sequence n's own
    /// initial_state row where given.
    /// </summary>
    private Dictionary<string, Tensor> Steps(IReadOnlyDictionary<string, Tensor> x, int start, int length, int? sequence = null) =>
        x.Where(e => e.Key != "cu_seqlens").ToDictionary(e => e.Key, e =>
            (StepAxis(e.Key, e.Value) ?? (Form.Outputs.Any(o => "d" + o.Name == e.Key) ? StepAxis(e.Key[1..], e.Value) : null)) is { } axis
                ? Slice(e.Value, axis, start, length)
            : e.Key == "initial_state" && sequence is { } n ? Slice(e.Value, 0, n, 1) : e.Value);
}
