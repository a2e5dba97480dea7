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
