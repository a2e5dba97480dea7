using AttentionReference.Forms.StateSpace;
using AttentionReference.Golden.Cases;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;
using static AttentionReference.Tests.Forms.StateSpace.StateSpaceTensors;

namespace AttentionReference.Tests.Forms.StateSpace;

/// <summary>A random diagonal-SSM problem (s4d; h3 reads H as heads and d as head_dim): real or complex modes, dt regime, seed.</summary>
public sealed record DiagonalCase(int B, int T, int H, int N, int D, int M, bool RealA, double LogDtShift, int Split, int Seed)
{
    public static Arbitrary<DiagonalCase> Arbitrary { get; } =
        (from b in Gen.Choose(1, 2)
         from t in Gen.Choose(0, 20)
         from h in Gen.Choose(1, 3)
         from n in Gen.Choose(1, 4)
         from d in Gen.Choose(1, 3)
         from m in Gen.Choose(1, 5)
         from realA in Gen.Elements(false, true)
         from shift in Gen.Elements(0.0, 0.0, 3.0, -15.0) // dt ≈ 0.05, ≈ 1 (strong), ≈ 1.5e-8 (tiny)
         from split in Gen.Choose(0, 1000)
         from seed in Gen.Choose(0, int.MaxValue)
         select new DiagonalCase(b, t, h, n, d, m, realA, shift, split, seed)).ToArbitrary();

    public Dictionary<string, Tensor> S4dInputs()
    {
        var random = new Random(Seed);
        var inputs = new Dictionary<string, Tensor> { ["u"] = TestTensors.Normal(random, 1, B, T, H) };
        StateSpaceCases.AddDiagonalSsm(inputs, Source(random), H, N, RealA, LogDtShift);
        return inputs;
    }

    /// <summary>h3's inputs, complex modes (the recipe's), or real ones (A_imag and C_imag left out) with real_a.</summary>
    public Dictionary<string, Tensor> H3Inputs()
    {
        var inputs = StateSpaceCases.H3Inputs(Source(new Random(Seed)), B, T, H, D, M, N);
        inputs["log_dt"] = new Tensor([H], inputs["log_dt"].Data.Select(x => x + LogDtShift).ToArray());
        if (RealA)
        {
            inputs.Remove("A_imag"); // A_real = −½·e^(N(0, 0.3²)) is as good a real spectrum as any
            inputs.Remove("C_imag");
        }
        return inputs;
    }

    /// <summary>"real_a=true" for real modes.</summary>
    public string[] Parameters => RealA ? ["real_a=true"] : [];
}

/// <summary>s4d's laws: recurrent = convolution = fft (the last within the FFT's roundoff), tiny steps, causality, bad input.</summary>
public sealed class S4dTests
{
    // The direct convolution and the recurrence sum the same T terms per output in different orders (the
    // recurrence through |Ā| ≤ 1 products): a few roundings per step, far below 1e-12 relative for T ≤ 20.
    private const double F64 = 1e-12;

    private static readonly S4d Form = new();

    private static Tensor Run(DiagonalCase c, string variant, IReadOnlyDictionary<string, Tensor> x) => Form.Call(variant, x, c.Parameters)["o"];

    [Law]
    public bool Convolution_equals_recurrent(DiagonalCase c)
    {
        var x = c.S4dInputs();
        var recurrent = Run(c, "recurrent", x);
        return Finite(recurrent) && TestTensors.Close(Run(c, "convolution", x), recurrent, F64);
    }

    [Law]
    public bool Fft_equals_convolution_within_the_fft_roundoff_bound(DiagonalCase c)
    {
        // Radix-2 FFT convolution of size n: |error| ≤ c·log2(n)·ε·‖K‖₂‖u‖₂ per output (each of the log2(n)
        // butterfly levels of three transforms adds ~ε relative to the 2-norm; c = 16 covers the three
        // transforms and the twiddles' own rounding). The direct sum adds its own T·ε·‖K‖₂‖u‖₂ (Cauchy–Schwarz),
        // and adding D·u rounds once more, ε·|o|.
        var x = c.S4dInputs();
        var (direct, fft) = (Run(c, "convolution", x), Run(c, "fft", x));
        var kernel = Kernel(c, x);
        double eps = Math.Pow(2, -53), levels = Math.Log2(2 * Math.Max(c.T, 1)) + 1;
        for (int b = 0; b < c.B; b++)
        {
            for (int h = 0; h < c.H; h++)
            {
                double kNorm = Math.Sqrt(Enumerable.Range(0, c.T).Sum(l => kernel[0, l, h] * kernel[0, l, h]));
                double uNorm = Math.Sqrt(Enumerable.Range(0, c.T).Sum(t => x["u"][b, t, h] * x["u"][b, t, h]));
                for (int t = 0; t < c.T; t++)
                {
                    double bound = ((16 * levels) + c.T) * eps * kNorm * uNorm + 2 * eps * Math.Abs(direct[b, t, h]);
                    if (!(Math.Abs(fft[b, t, h] - direct[b, t, h]) <= bound))
                    {
                        return false;
                    }
                }
            }
        }
        return true;
    }

    /// <summary>The convolution kernel K [1, T, H]: the convolution variant's response to a unit impulse, without D.</summary>
    private static Tensor Kernel(DiagonalCase c, Dictionary<string, Tensor> x)
    {
        var impulse = Tensor.Zeros(1, c.T, c.H);
        for (int h = 0; h < c.H && c.T > 0; h++)
        {
            impulse[0, 0, h] = 1;
        }
        var noSkip = new Dictionary<string, Tensor>(x) { ["u"] = impulse };
        noSkip.Remove("D");
        return Run(c, "convolution", noSkip);
    }

    [Law]
    public bool A_tiny_step_gives_the_first_order_response(DiagonalCase c)
    {
        // dt ≈ 2e-10: Ā = 1 + O(dt·A), B̄ = dt·(1 + O(dt·A)), so o_t = f·Re(Σ_n C_n)·dt·Σ_{s≤t} u_s up to
        // O(dt·|A|·T) ≈ 1e-7 relative to f·Σ_n |C_n|·dt·Σ_{s≤t} |u_s| (Re(Σ C) may cancel, so that is the
        // scale); 1e-5 of it leaves room and still fails if B̄ lost its digits to cancellation. D is left out:
        // D·u ≈ 1 would round away the ~1e-10 response.
        var x = (c with { LogDtShift = -20 }).S4dInputs();
        x.Remove("D");
        var o = Run(c, "recurrent", x);
        double f = c.RealA ? 1 : 2;
        for (int b = 0; b < c.B; b++)
        {
            for (int h = 0; h < c.H; h++)
            {
                double sumC = 0, sumModulus = 0, dt = Math.Exp(x["log_dt"][h]), running = 0, runningAbs = 0;
                for (int n = 0; n < c.N; n++)
                {
                    double im = c.RealA ? 0 : x["C_imag"][h, n];
                    sumC += x["C_real"][h, n];
                    sumModulus += Math.Sqrt((x["C_real"][h, n] * x["C_real"][h, n]) + (im * im));
                }
                for (int t = 0; t < c.T; t++)
                {
                    running += x["u"][b, t, h];
                    runningAbs += Math.Abs(x["u"][b, t, h]);
                    double expected = f * sumC * dt * running, scale = f * sumModulus * dt * runningAbs;
                    if (!(Math.Abs(o[b, t, h] - expected) <= 1e-5 * scale))
                    {
                        return false;
                    }
                }
            }
        }
        return true;
    }

    [Law]
    public bool Outputs_up_to_t_ignore_inputs_after_t(DiagonalCase c)
    {
        var x = c.S4dInputs();
        int t = c.T == 0 ? 0 : c.Split % c.T;
        var changed = new Dictionary<string, Tensor>(x) { ["u"] = ChangedAfter(x["u"], 1, t + 1, new Random(c.Seed + 1)) };
        // Steps up to t read nothing after it in the recurrence and the direct sum: bit for bit. (The FFT mixes every
        // step into every frequency, so its outputs up to t move by roundoff; it is held to the direct sum instead.)
        return SamePrefix(Run(c, "recurrent", x), Run(c, "recurrent", changed), 1, t + 1)
            && SamePrefix(Run(c, "convolution", x), Run(c, "convolution", changed), 1, t + 1);
    }

    [Law(20)]
    public bool Gradients_at_one_step(DiagonalCase c) =>
        StateSpaceGradients.FiniteAndAgreeing(Form, (c with { T = 1 }).S4dInputs(), c.Seed + 3, c.Parameters);

    [Law(20)]
    public bool Gradients_with_strong_decay_stay_finite_and_agree(DiagonalCase c)
    {
        // log_dt shifted by 6.7: dt ≈ 40, so dt·A_real ≈ −20 per step (complex modes; −40 to −160 real ones), and
        // Ā^l = exp(l·dt·A) underflows within 36 steps: every variant keeps Ā^l as the exp of l·dt·A (never a quotient
        // of powers), so the gradients stay finite, equal finite differences and agree as in any other case.
        var strong = c with { T = Math.Max(c.T, 2) * 2, LogDtShift = 6.7 };
        return StateSpaceGradients.FiniteAndAgreeing(Form, strong.S4dInputs(), c.Seed + 3, c.Parameters);
    }

    [Law(50)]
    public bool Gradients_of_the_recurrence_equal_central_finite_differences(DiagonalCase c) =>
        StateSpaceGradients.EqualFiniteDifferences(Form, c.S4dInputs(), new Random(c.Seed + 3), c.Parameters);

    [Law(50)]
    public bool Convolution_and_fft_backward_equal_the_recurrences(DiagonalCase c) =>
        StateSpaceGradients.EveryVariantEqualsTheDefinition(Form,
            StateSpaceGradients.WithCotangents(Form, c.S4dInputs(), new Random(c.Seed + 3), c.Parameters), c.Parameters);

    [Law(50)]
    public bool A_tiny_step_gives_the_first_order_gradients_of_A_and_log_dt(DiagonalCase c)
    {
        // dt ≈ 2e-10: Ā = 1 + dt·A + O(dt²), B̄ = dt·(1 + dt·A/2 + O(dt²)), so with U_t = Σ_{s≤t} u_s,
        //   o_t = f·Re Σ_n C_n dt Σ_{s≤t} u_s (1 + dt·A_n (t − s + ½)) + O(dt³),
        //   dA_n (as dA_real + i·dA_imag) = conj(f·C_n dt² Σ_t do_t Σ_{s≤t} u_s (t − s + ½)),
        //   dlog_dt = dt·dL/ddt = f·Re(Σ_n C_n)·dt·Σ_t do_t U_t,
        // each up to O(dt·|A|·T) ≈ 1e-8 relative to the same sums over |·|. 1e-5 of that scale still fails if A's
        // gradient lost its digits to the cancellation in B̄'s derivative ((e^ζ(ζ − 1) + 1)/ζ² at ζ ≈ 1e-10).
        var x = (c with { LogDtShift = -20 }).S4dInputs();
        x.Remove("D");
        var withCotangents = StateSpaceGradients.WithCotangents(Form, x, new Random(c.Seed + 3), c.Parameters);
        var g = StateSpaceGradients.Gradients(Form, "recurrent", withCotangents, c.Parameters);
        Tensor u = x["u"], dO = withCotangents["do"];
        double f = c.RealA ? 1 : 2;
        for (int h = 0; h < c.H; h++)
        {
            double dt = Math.Exp(x["log_dt"][h]);
            double weighted = 0, weightedAbs = 0, plain = 0, plainAbs = 0; // Σ_t do_t Σ_{s≤t} u_s (t − s + ½), Σ_t do_t U_t
            for (int b = 0; b < c.B; b++)
            {
                for (int t = 0; t < c.T; t++)
                {
                    for (int s = 0; s <= t; s++)
                    {
                        double term = dO[b, t, h] * u[b, s, h];
                        (weighted, weightedAbs) = (weighted + (term * (t - s + 0.5)), weightedAbs + Math.Abs(term * (t - s + 0.5)));
                        (plain, plainAbs) = (plain + term, plainAbs + Math.Abs(term));
                    }
                }
            }
            double sumC = 0, sumModulus = 0;
            for (int n = 0; n < c.N; n++)
            {
                double cr = x["C_real"][h, n], ci = c.RealA ? 0 : x["C_imag"][h, n], modulus = Math.Sqrt((cr * cr) + (ci * ci));
                double scale = f * modulus * dt * dt * weightedAbs;
                bool real = Math.Abs(g["dA_real"][h, n] - (f * cr * dt * dt * weighted)) <= 1e-5 * scale;
                bool imag = c.RealA || Math.Abs(g["dA_imag"][h, n] + (f * ci * dt * dt * weighted)) <= 1e-5 * scale;
                if (!(real && imag))
                {
                    return false;
                }
                (sumC, sumModulus) = (sumC + cr, sumModulus + modulus);
            }
            if (!(Math.Abs(g["dlog_dt"][h] - (f * sumC * dt * plain)) <= 1e-5 * f * sumModulus * dt * plainAbs))
            {
                return false;
            }
        }
        return true;
    }

    [Fact]
    public void Real_a_with_complex_parts_given_or_complex_modes_without_them_are_bad_input()
    {
        var x = new DiagonalCase(1, 4, 2, 2, 1, 1, false, 0, 0, 1).S4dInputs();
        var given = Assert.Throws<InputException>(() => Form.Call("recurrent", x, "real_a=true"));
        Assert.Equal("A_imag", given.Tensor);
        x.Remove("C_imag");
        var missing = Assert.Throws<InputException>(() => Form.Call("recurrent", x));
        Assert.Equal("C_imag", missing.Tensor);
    }
}
