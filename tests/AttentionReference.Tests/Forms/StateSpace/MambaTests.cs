using AttentionReference.Forms.GatedLinear;
using AttentionReference.Forms.StateSpace;
using AttentionReference.Golden.Cases;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;
using static AttentionReference.Tests.Forms.StateSpace.StateSpaceTensors;

namespace AttentionReference.Tests.Forms.StateSpace;

/// <summary>A random mamba problem: shapes, B/C kind (0 time-invariant, 1 shared, 2 grouped), block size, regime, options, split, seed.</summary>
public sealed record MambaCase(int B, int D, int L, int N, int Kind, int BlockSize, StepRegime Regime, bool Extras, bool Softplus, int Split, int Seed)
{
    public static Arbitrary<MambaCase> Arbitrary { get; } =
        (from b in Gen.Choose(1, 2)
         from d in Gen.Elements(2, 4)
         from l in Gen.Choose(0, 20)
         from n in Gen.Choose(1, 4)
         from kind in Gen.Choose(0, 2)
         from block in Gen.Choose(1, 22)
         from regime in Gen.Elements(StepRegime.Mild, StepRegime.Strong, StepRegime.Mixed)
         from extras in Gen.Elements(false, true)
         from softplus in Gen.Elements(false, true)
         from split in Gen.Choose(0, 1000)
         from seed in Gen.Choose(0, int.MaxValue)
         select new MambaCase(b, d, l, n, kind, block, regime, extras, softplus && regime == StepRegime.Mild, split, seed)).ToArbitrary();

    public Dictionary<string, Tensor> Inputs(int batch = 0, int[]? cuSeqlens = null)
    {
        var random = new Random(Seed);
        var shape = new StateSpaceCases.MambaShape(batch == 0 ? B : batch, D, L, N, Kind) { Extras = Extras, CuSeqlens = cuSeqlens };
        var inputs = StateSpaceCases.MambaInputs(Source(random), shape, Softplus);
        Tensor a = inputs["A"];
        // Δ[b, d, l] multiplies A[d, :]; the smallest |A_dn| is n = 0's
        Steps(inputs["delta"], i => Math.Abs(a[(i / L) % D, 0]), Regime, random);
        if (Regime != StepRegime.Mild)
        {
            inputs.Remove("delta_bias");
        }
        return inputs;
    }

    public MambaOptions Options(Dictionary<string, Tensor> x) => new()
    {
        D = x.GetValueOrDefault("D"),
        Z = x.GetValueOrDefault("z"),
        DeltaBias = x.GetValueOrDefault("delta_bias"),
        DeltaSoftplus = Softplus,
        InitialState = x.GetValueOrDefault("initial_state"),
        CuSeqlens = x.GetValueOrDefault("cu_seqlens"),
    };
}

public sealed class MambaTests
{
    // The scan multiplies the same factors as the loop, grouped differently: a few roundings per step, and decays
    // only shrink terms, so 1e-12 relative holds (FORMS.md's f64 bound).
    private const double F64 = 1e-12;

    private static StateResult Recurrent(MambaCase c, Dictionary<string, Tensor> x) =>
        Mamba.Recurrent(x["u"], x["delta"], x["A"], x["B"], x["C"], c.Options(x));

    [Fact]
    public void Scan_equals_recurrent_for_any_block_size() =>
        PropertyRuns.Check(Prop.ForAll(MambaCase.Arbitrary, c =>
        {
            var x = c.Inputs();
            var reference = Recurrent(c, x);
            var scan = Mamba.Scan(x["u"], x["delta"], x["A"], x["B"], x["C"], c.BlockSize, c.Options(x));
            return Finite(reference.O) && TestTensors.Close(scan.O, reference.O, F64)
                && TestTensors.Close(scan.FinalState, reference.FinalState, F64);
        }));

    [Fact]
    public void Scan_with_a_block_size_near_int_max_equals_recurrent() =>
        // (j + 1)·block_size overflowed int here once; a block longer than the sequence is the whole sequence.
        PropertyRuns.Check(Prop.ForAll(MambaCase.Arbitrary, c =>
        {
            var x = c.Inputs();
            var reference = Recurrent(c, x);
            var scan = Mamba.Scan(x["u"], x["delta"], x["A"], x["B"], x["C"], int.MaxValue - c.Seed % 3, c.Options(x));
            return TestTensors.Close(scan.O, reference.O, F64) && TestTensors.Close(scan.FinalState, reference.FinalState, F64);
        }), 50);

    [Fact]
    public void Running_in_two_parts_with_the_first_final_state_equals_one_run() =>
        PropertyRuns.Check(Prop.ForAll(MambaCase.Arbitrary, c =>
        {
            var x = c.Inputs();
            int split = c.L == 0 ? 0 : c.Split % (c.L + 1);
            Dictionary<string, Tensor> Part(int start, int length) => x.ToDictionary(e => e.Key, e =>
                e.Key is "u" or "delta" or "z" || (e.Key is "B" or "C" && e.Value.Rank >= 3)
                    ? Slice(e.Value, e.Value.Rank - 1, start, length) : e.Value);
            var whole = Recurrent(c, x);
            var first = Recurrent(c, Part(0, split));
            var second = Part(split, c.L - split);
            second["initial_state"] = first.FinalState;
            var rest = Mamba.Scan(second["u"], second["delta"], second["A"], second["B"], second["C"], c.BlockSize, c.Options(second));
            return TestTensors.Close(Concat(first.O, rest.O, 2), whole.O, F64) && TestTensors.Close(rest.FinalState, whole.FinalState, F64);
        }));

    [Fact]
    public void Varlen_equals_separate_runs() =>
        PropertyRuns.Check(Prop.ForAll(MambaCase.Arbitrary, c =>
        {
            int cut = c.L == 0 ? 0 : c.Split % (c.L + 1);
            var x = c.Inputs(batch: 1, cuSeqlens: [0, cut, c.L]);
            var packed = Mamba.Scan(x["u"], x["delta"], x["A"], x["B"], x["C"], c.BlockSize, c.Options(x));
            return new[] { (0, cut), (cut, c.L - cut) }.Select((part, n) =>
            {
                var single = x.Where(e => e.Key != "cu_seqlens").ToDictionary(e => e.Key, e =>
                    e.Key is "u" or "delta" or "z" || (e.Key is "B" or "C" && e.Value.Rank >= 3)
                        ? Slice(e.Value, e.Value.Rank - 1, part.Item1, part.Item2)
                        : e.Key == "initial_state" ? Slice(e.Value, 0, n, 1) : e.Value);
                var alone = Recurrent(c, single);
                return TestTensors.Close(Slice(packed.O, 2, part.Item1, part.Item2), alone.O, F64)
                    && TestTensors.Close(Slice(packed.FinalState, 0, n, 1), alone.FinalState, F64);
            }).All(ok => ok);
        }));

    [Fact]
    public void Outputs_up_to_t_ignore_inputs_after_t() =>
        PropertyRuns.Check(Prop.ForAll(MambaCase.Arbitrary, c =>
        {
            var x = c.Inputs();
            int t = c.L == 0 ? 0 : c.Split % c.L;
            var random = new Random(c.Seed + 1);
            var changed = x.ToDictionary(e => e.Key, e =>
                e.Key is "u" or "delta" or "z" || (e.Key is "B" or "C" && e.Value.Rank >= 3)
                    ? ChangedAfter(e.Value, e.Value.Rank - 1, t + 1, random) : e.Value);
            var before = Recurrent(c, x).O;
            var after = Recurrent(c, changed).O;
            var scanned = Mamba.Scan(changed["u"], changed["delta"], changed["A"], changed["B"], changed["C"], c.BlockSize, c.Options(changed)).O;
            var scannedBefore = Mamba.Scan(x["u"], x["delta"], x["A"], x["B"], x["C"], c.BlockSize, c.Options(x)).O;
            return SamePrefix(before, after, 2, t + 1) && SamePrefix(scannedBefore, scanned, 2, t + 1);
        }));

    [Fact]
    public void Grouped_B_repeats_each_group_over_its_channels() =>
        PropertyRuns.Check(Prop.ForAll(MambaCase.Arbitrary, c =>
        {
            // [B,G,N,L] with G = D equals per-channel projections; with G = 1 it equals the shared [B,N,L] form
            var x = c.Inputs();
            if (x["B"].Rank != 3)
            {
                return true; // the law is about the shared form's two spellings
            }
            var grouped = new Dictionary<string, Tensor>(x)
            {
                ["B"] = x["B"].Reshape(c.B, 1, c.N, c.L),
                ["C"] = x["C"].Reshape(c.B, 1, c.N, c.L),
            };
            return TestTensors.Close(Recurrent(c, grouped).O, Recurrent(c, x).O, 0);
        }));

    [Fact]
    public void With_A_constant_over_the_state_and_shared_B_C_mamba_is_ssd_with_head_dim_1() =>
        PropertyRuns.Check(Prop.ForAll(MambaCase.Arbitrary, c =>
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
            var mamba = Recurrent(c, x);
            var ssd = Ssd.Chunked(TimeMajor(x["u"]), TimeMajor(x["delta"]).Reshape(c.B, c.L, c.D), new Tensor([c.D], Enumerable.Range(0, c.D).Select(d => rate[d, 0]).ToArray()),
                OneGroup(x["B"]), OneGroup(x["C"]), c.BlockSize, new SsdOptions
                {
                    D = x.GetValueOrDefault("D"),
                    Z = x.GetValueOrDefault("z") is { } z ? TimeMajor(z) : null,
                    DtBias = x.GetValueOrDefault("delta_bias"),
                    DtSoftplus = c.Softplus,
                    InitialState = x.GetValueOrDefault("initial_state")?.Reshape(c.B, c.D, 1, c.N),
                });
            return TestTensors.Close(TimeMajor(mamba.O), ssd.O, F64)
                && TestTensors.Close(mamba.FinalState.Reshape(c.B, c.D, 1, c.N), ssd.FinalState, F64);
        }));

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

    [Fact]
    public void A_group_count_not_dividing_the_channels_and_a_block_size_below_one_are_bad_input()
    {
        var u = Tensor.Zeros(1, 4, 3);
        var a = Tensor.Zeros(4, 2);
        var grouped = Tensor.Zeros(1, 3, 2, 3);
        var groups = Assert.Throws<InputException>(() => Mamba.Recurrent(u, u, a, grouped, grouped));
        Assert.Equal("B", groups.Tensor);
        var block = Assert.Throws<InputException>(() => Mamba.Scan(u, u, a, Tensor.Zeros(1, 2, 3), Tensor.Zeros(1, 2, 3), 0));
        Assert.Contains("block_size", block.Message, StringComparison.Ordinal);
    }
}
