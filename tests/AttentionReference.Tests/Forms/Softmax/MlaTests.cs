using AttentionReference.Forms;
using AttentionReference.IO;
using AttentionReference.Tensors;
using AttentionReference.Tests.Cli;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Forms.Softmax;

/// <summary>A random MLA problem: Tq ≠ Sk (decoding against a cache, or more queries than keys), odd latent and head dims.</summary>
public sealed record MlaCase(int B, int Tq, int Sk, int H, int Dn, int Dr, int Dc, int Dv, bool Causal, int Seed)
{
    public static IForm Form { get; } = new AttentionReference.Forms.Softmax.Mla();

    /// <summary>o and lse of <paramref name="variant"/> on <paramref name="tensors"/> with this case's causal.</summary>
    public SoftmaxOutputs Run(string variant, Dictionary<string, Tensor> tensors) =>
        SoftmaxOutputs.Of(Form.Call(variant, tensors, FamilyTensors.Parameter("causal", Causal)));

    public sealed record MlaInputs(Tensor QNope, Tensor QPe, Tensor CKv, Tensor KPe, Tensor WUk, Tensor WUv)
    {
        /// <summary>The tensors of a call, with the up-projections as w_uk and w_uv.</summary>
        public Dictionary<string, Tensor> Tensors() => new()
        {
            ["q_nope"] = QNope, ["q_pe"] = QPe, ["c_kv"] = CKv, ["k_pe"] = KPe, ["w_uk"] = WUk, ["w_uv"] = WUv,
        };

        /// <summary>The tensors of a call, with the up-projections stacked as DeepSeek-V3's wkv_b [H, Dn+Dv, Dc].</summary>
        public Dictionary<string, Tensor> Stacked()
        {
            int h = WUk.Dim(0), dn = WUk.Dim(1), dv = WUv.Dim(1), dc = WUk.Dim(2);
            var wkvB = Tensor.Zeros(h, dn + dv, dc);
            for (int head = 0; head < h; head++)
            {
                Array.Copy(WUk.Data, head * dn * dc, wkvB.Data, head * (dn + dv) * dc, dn * dc);
                Array.Copy(WUv.Data, head * dv * dc, wkvB.Data, (head * (dn + dv) + dn) * dc, dv * dc);
            }
            return new() { ["q_nope"] = QNope, ["q_pe"] = QPe, ["c_kv"] = CKv, ["k_pe"] = KPe, ["wkv_b"] = wkvB };
        }
    }

    public MlaInputs Inputs()
    {
        var random = new Random(Seed);
        // Weights of size 1/√Dc keep the expanded keys and values O(1), as trained up-projections are.
        double w = 1 / Math.Sqrt(Dc);
        return new MlaInputs(
            TestTensors.Normal(random, 1, B, Tq, H, Dn),
            TestTensors.Normal(random, 1, B, Tq, H, Dr),
            TestTensors.Normal(random, 1, B, Sk, Dc),
            TestTensors.Normal(random, 1, B, Sk, Dr),
            TestTensors.Normal(random, w, H, Dn, Dc),
            TestTensors.Normal(random, w, H, Dv, Dc));
    }

    public static Arbitrary<MlaCase> Arbitrary { get; } =
        (from b in Gen.Choose(1, 2)
         from tq in Gen.Choose(1, 7)
         from sk in Gen.Choose(1, 9)
         from h in Gen.Choose(1, 3)
         from dn in Gen.Elements(1, 3, 8)
         from dr in Gen.Elements(1, 2, 4)
         from dc in Gen.Elements(1, 5, 16)
         from dv in Gen.Elements(1, 3, 8)
         from causal in Gen.Elements(false, true)
         from seed in Gen.Choose(0, int.MaxValue)
         select new MlaCase(b, tq, sk, h, dn, dr, dc, dv, causal, seed)).ToArbitrary();
}

/// <summary>mla's laws: absorbed = naive, causality, the stacked weights, the layout, the empty rows, the CLI.</summary>
public sealed class MlaTests
{
    // Both sides compute the same sums in double in different orders (W_UK c first, or W_UKᵀ q first; W_UV before or
    // after the weighted sum): a few ulps per term over at most 16·9 terms, below 1e-12 relative.
    private const double SameMathInDouble = 1e-12;

    private static readonly string[] s_variants = ["naive", "absorbed"];

    [Law]
    public bool Absorbed_equals_naive(MlaCase c)
    {
        var x = c.Inputs().Tensors();
        var (naive, absorbed) = (c.Run("naive", x), c.Run("absorbed", x));
        return TestTensors.Close(absorbed.O, naive.O, SameMathInDouble) && TestTensors.Close(absorbed.Lse, naive.Lse, SameMathInDouble);
    }

    [Law]
    public bool Causal_outputs_do_not_depend_on_later_cache_entries(MlaCase c0)
    {
        var c = c0 with { Causal = true };
        var x = c.Inputs();
        // Change the last cache entry: only queries whose diagonal i + Sk − Tq reaches Sk − 1 (i = Tq − 1) may change.
        var (cKv, kPe) = (x.CKv.Clone(), x.KPe.Clone());
        for (int b = 0; b < c.B; b++)
        {
            cKv[b, c.Sk - 1, 0] += 1;
            kPe[b, c.Sk - 1, 0] += 1;
        }
        var changed = (x with { CKv = cKv, KPe = kPe }).Tensors();
        return s_variants.All(variant =>
        {
            SoftmaxOutputs before = c.Run(variant, x.Tensors()), after = c.Run(variant, changed);
            // The same arithmetic on the same numbers for rows 0 … Tq − 2: bit for bit.
            return FamilyTensors.SliceTime(before.O, 0, c.Tq - 1).Data.SequenceEqual(FamilyTensors.SliceTime(after.O, 0, c.Tq - 1).Data)
                && FamilyTensors.SliceTime(before.Lse, 0, c.Tq - 1).Data.SequenceEqual(FamilyTensors.SliceTime(after.Lse, 0, c.Tq - 1).Data);
        });
    }

    [Law]
    public bool Wkv_b_stacked_per_head_equals_separate_up_projections(MlaCase c)
    {
        var x = c.Inputs();
        // DeepSeek-V3's wkv_b.weight viewed [H, Dn + Dv, Dc]: per head the W_UK rows, then the W_UV rows. The same numbers
        // in the same order: bit for bit.
        return s_variants.All(variant => c.Run(variant, x.Tensors()).SameBits(c.Run(variant, x.Stacked())));
    }

    // Gradients (issue #19): the definition's against finite differences (with w_uk and w_uv, or wkv_b), absorbed's
    // against the definition's (FamilyGradients.SameGradientsInDouble and its reason), wkv_b's as w_uk's and w_uv's.

    private static string[] Causal(MlaCase c) => [FamilyTensors.Parameter("causal", c.Causal)];

    [Law(50)]
    public Property Gradients_of_naive_equal_central_finite_differences(MlaCase c)
    {
        var x = c.Inputs();
        var tensors = c.Seed % 2 == 0 ? x.Tensors() : x.Stacked();
        string? mismatch = FamilyGradients.FiniteDifferenceMismatch(MlaCase.Form, "naive", tensors, Causal(c), new Random(c.Seed));
        return (mismatch is null).Label(mismatch ?? "");
    }

    [Law]
    public bool Backward_of_absorbed_equals_naive(MlaCase c)
    {
        var x = c.Inputs();
        var inputs = FamilyGradients.WithCotangents(MlaCase.Form, "naive", c.Seed % 2 == 0 ? x.Tensors() : x.Stacked(), Causal(c), new Random(c.Seed));
        return FamilyGradients.Same(FamilyGradients.Gradients(MlaCase.Form, "absorbed", inputs, Causal(c)),
            FamilyGradients.Gradients(MlaCase.Form, "naive", inputs, Causal(c)));
    }

    [Law]
    public bool Gradients_with_wkv_b_are_those_of_w_uk_and_w_uv_stacked_per_head(MlaCase c)
    {
        var x = c.Inputs();
        var separate = FamilyGradients.WithCotangents(MlaCase.Form, "naive", x.Tensors(), Causal(c), new Random(c.Seed));
        var stacked = new Dictionary<string, Tensor>(x.Stacked()) { ["do"] = separate["do"], ["dlse"] = separate["dlse"] };
        return s_variants.All(variant =>
        {
            var (expected, actual) = (FamilyGradients.Gradients(MlaCase.Form, variant, separate, Causal(c)), FamilyGradients.Gradients(MlaCase.Form, variant, stacked, Causal(c)));
            var restacked = new MlaCase.MlaInputs(x.QNope, x.QPe, x.CKv, x.KPe, expected["dw_uk"], expected["dw_uv"]).Stacked()["wkv_b"];
            // The same numbers in the same order: bit for bit.
            return actual.Count == expected.Count - 1 && actual["dwkv_b"].Data.SequenceEqual(restacked.Data)
                && expected.Where(p => p.Key is not ("dw_uk" or "dw_uv")).All(p => actual[p.Key].Data.SequenceEqual(p.Value.Data));
        });
    }

    [Law]
    public bool Backward_of_decoding_one_query_at_a_time_against_the_cache_it_saw_equals_one_call_under_causal(MlaCase c0)
    {
        // Autoregressive decoding (FlashMLA's use), the split law of a KV-cache form: query i of Tq is the one query of the
        // step that decoded it, against the cache's first Sk − (Tq − 1 − i) entries (none if fewer: its gradients are 0).
        // Under bottom-right causal it sees the same entries with the same scores, so dq_nope's and dq_pe's rows are those
        // steps' and dc_kv, dk_pe, dw_uk and dw_uv their sums, in another order (FamilyGradients.SameGradientsInDouble).
        var c = c0 with { Causal = true };
        var x = c.Inputs();
        var inputs = FamilyGradients.WithCotangents(MlaCase.Form, "naive", x.Tensors(), Causal(c), new Random(c.Seed));
        var steps = FamilyGradients.Gradients(MlaCase.Form, "naive", inputs, Causal(c)).ToDictionary(p => p.Key, p => Tensor.Zeros(p.Value.ShapeArray()));
        for (int i = 0; i < c.Tq; i++)
        {
            int cached = c.Sk - (c.Tq - 1 - i);
            if (cached <= 0)
            {
                continue;
            }
            var step = new Dictionary<string, Tensor>(inputs)
            {
                ["q_nope"] = FamilyTensors.SliceTime(x.QNope, i, 1),
                ["q_pe"] = FamilyTensors.SliceTime(x.QPe, i, 1),
                ["c_kv"] = FamilyTensors.SliceTime(x.CKv, 0, cached),
                ["k_pe"] = FamilyTensors.SliceTime(x.KPe, 0, cached),
                ["do"] = FamilyTensors.SliceTime(inputs["do"], i, 1),
                ["dlse"] = FamilyTensors.SliceTime(inputs["dlse"], i, 1),
            };
            foreach (var (name, gradient) in FamilyGradients.Gradients(MlaCase.Form, "naive", step, Causal(c)))
            {
                FamilyTensors.AddTime(gradient, steps[name], name is "dq_nope" or "dq_pe" ? i : 0);
            }
        }
        return s_variants.All(variant => FamilyGradients.Same(FamilyGradients.Gradients(MlaCase.Form, variant, inputs, Causal(c)), steps));
    }

    [Fact]
    public void Queries_before_the_cache_under_causal_give_zero_gradients()
    {
        // Tq = 4 > Sk = 2: queries 0 and 1 see no key; large cotangents on their o = 0 and lse = −∞ change nothing.
        var c = new MlaCase(1, 4, 2, 2, 3, 2, 4, 3, true, 29);
        var inputs = FamilyGradients.WithCotangents(MlaCase.Form, "naive", c.Inputs().Tensors(), Causal(c), new Random(3));
        var quiet = new Dictionary<string, Tensor>(inputs) { ["do"] = inputs["do"].Clone(), ["dlse"] = inputs["dlse"].Clone() };
        for (int i = 0; i < 2; i++)
        {
            for (int h = 0; h < c.H; h++)
            {
                (inputs["dlse"][0, i, h], quiet["dlse"][0, i, h]) = (1e3, 0);
                for (int d = 0; d < c.Dv; d++)
                {
                    (inputs["do"][0, i, h, d], quiet["do"][0, i, h, d]) = (5, 0);
                }
            }
        }
        foreach (string variant in s_variants)
        {
            var gradients = FamilyGradients.Gradients(MlaCase.Form, variant, inputs, Causal(c));
            Assert.All(gradients.Values, g => Assert.All(g.Data, e => Assert.True(double.IsFinite(e), variant)));
            Assert.All(FamilyTensors.SliceTime(gradients["dq_nope"], 0, 2).Data, e => Assert.Equal(0, e));
            Assert.All(FamilyTensors.SliceTime(gradients["dq_pe"], 0, 2).Data, e => Assert.Equal(0, e));
            Assert.True(FamilyGradients.Same(gradients, FamilyGradients.Gradients(MlaCase.Form, variant, quiet, Causal(c))), variant);
        }
    }

    [Fact]
    public void The_bhtd_layout_transposes_the_queries_and_outputs_and_leaves_the_cache_alone()
    {
        // q_nope, q_pe, o, lse have a head axis and follow --layout; c_kv [B,Sk,Dc] and k_pe [B,Sk,Dr] have none.
        var c = new MlaCase(2, 3, 5, 2, 3, 2, 4, 3, true, 23);
        var x = c.Inputs();
        var tensors = new Dictionary<string, Tensor>(x.Tensors())
        {
            ["q_nope"] = Layouts.SwapTimeAndHeads(x.QNope),
            ["q_pe"] = Layouts.SwapTimeAndHeads(x.QPe),
        };
        var run = FormRunner.Run(FormCatalog.Find("mla"), tensors, new Dictionary<string, string> { ["causal"] = "true" },
            new RunOptions { Variant = "absorbed", Layout = Layout.Bhtd });
        var expected = c.Run("absorbed", x.Tensors());
        // The same computation, only moved: bit for bit.
        Assert.Equal(Layouts.SwapTimeAndHeads(expected.O).Data, run.Outputs["o"].Data);
        Assert.Equal(Layouts.SwapTimeAndHeads(expected.Lse).Data, run.Outputs["lse"].Data);
    }

    [Fact]
    public void Queries_before_the_cache_under_causal_give_zero_output_and_minus_infinity_lse()
    {
        // Tq = 4 > Sk = 2: queries 0 and 1 have diagonals −2 and −1 and see no key, in both variants.
        var c = new MlaCase(1, 4, 2, 2, 3, 2, 5, 3, true, 9);
        foreach (string variant in s_variants)
        {
            var result = c.Run(variant, c.Inputs().Tensors());
            for (int i = 0; i < 4; i++)
            {
                bool empty = i < 2;
                Assert.Equal(empty, double.IsNegativeInfinity(result.Lse[0, i, 1]));
                Assert.Equal(empty, Enumerable.Range(0, 3).All(d => result.O[0, i, 1, d] == 0));
            }
        }
    }

    [Fact]
    public void A_latent_of_another_width_than_the_weights_is_bad_input_naming_w_uk()
    {
        var c = new MlaCase(1, 2, 3, 2, 3, 2, 5, 3, false, 1);
        var x = c.Inputs().Tensors();
        x["w_uk"] = Tensor.Zeros(2, 3, 4); // Dc is 5 in c_kv
        Assert.Equal("w_uk", Assert.Throws<InputException>(() => c.Run("absorbed", x)).Tensor);
    }

    [Fact]
    public void The_up_projections_come_either_split_or_stacked()
    {
        var c = new MlaCase(1, 2, 3, 2, 3, 2, 5, 3, false, 1);
        var x = c.Inputs();
        var both = new Dictionary<string, Tensor>(x.Stacked()) { ["w_uk"] = x.WUk, ["w_uv"] = x.WUv };
        Assert.Equal("wkv_b", Assert.Throws<InputException>(() => c.Run("naive", both)).Tensor);
        var half = x.Tensors();
        half.Remove("w_uv");
        Assert.Equal("w_uv", Assert.Throws<InputException>(() => c.Run("naive", half)).Tensor);
        var narrow = x.Stacked();
        narrow["wkv_b"] = Tensor.Zeros(2, 2, 5); // fewer rows than Dn = 3
        Assert.Equal("wkv_b", Assert.Throws<InputException>(() => c.Run("naive", narrow)).Tensor);
    }

    [Theory]
    [InlineData("naive")]
    [InlineData("absorbed")]
    public void Run_and_check_work_from_files(string variant)
    {
        using var temp = new TempFolder();
        var c = new MlaCase(2, 3, 6, 2, 4, 2, 8, 3, true, 17);
        var x = c.Inputs();
        var file = new TensorFile();
        file.Add("q_nope", x.QNope);
        file.Add("q_pe", x.QPe);
        file.Add("kv_cache", x.CKv); // DeepSeek-V3's names are accepted as aliases
        file.Add("pe_cache", x.KPe);
        file.Add("w_uk", x.WUk);
        file.Add("w_uv", x.WUv);
        file.Metadata["causal"] = "true";
        string input = temp.File("in.safetensors"), output = temp.File("out.safetensors");
        TensorFiles.Write(input, file);

        var run = CliRunner.Run("run", "mla", "--in", input, "--out", output, "--variant", variant);
        Assert.Equal(0, run.ExitCode);
        var expected = c.Run("naive", x.Tensors());
        var written = TensorFiles.Read(output);
        // Either variant against the naive one: same math in double.
        TestTensors.AssertClose(written["o"], expected.O, SameMathInDouble, "o");
        TestTensors.AssertClose(written["lse"], expected.Lse, SameMathInDouble, "lse");

        var check = CliRunner.Run("check", "mla", "--in", input, "--candidate", output, "--variant", variant);
        Assert.Equal(0, check.ExitCode);
    }
}
