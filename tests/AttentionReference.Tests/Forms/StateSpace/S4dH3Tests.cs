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

    public Dictionary<string, Tensor> H3Inputs()
    {
        var inputs = StateSpaceCases.H3Inputs(Source(new Random(Seed)), B, T, H, D, M, N);
        inputs["log_dt"] = new Tensor([H], inputs["log_dt"].Data.Select(x => x + LogDtShift).ToArray());
        return inputs;
    }

    public static DiagonalSsm Ssm(Dictionary<string, Tensor> x, bool realA) => new(
        x["log_dt"], x["A_real"], x.GetValueOrDefault("A_imag"), x["C_real"], x.GetValueOrDefault("C_imag"), x.GetValueOrDefault("D"), realA);
}

public sealed class S4dTests
{
    // The direct convolution and the recurrence sum the same T terms per output in different orders (the
    // recurrence through |Ā| ≤ 1 products): a few roundings per step, far below 1e-12 relative for T ≤ 20.
    private const double F64 = 1e-12;

    [Fact]
    public void Convolution_equals_recurrent() =>
        PropertyRuns.Check(Prop.ForAll(DiagonalCase.Arbitrary, c =>
        {
            var x = c.S4dInputs();
            var ssm = DiagonalCase.Ssm(x, c.RealA);
            var recurrent = S4d.Recurrent(x["u"], ssm);
            return Finite(recurrent) && TestTensors.Close(S4d.Convolution(x["u"], ssm), recurrent, F64);
        }));

    [Fact]
    public void Fft_equals_convolution_within_the_fft_roundoff_bound() =>
        PropertyRuns.Check(Prop.ForAll(DiagonalCase.Arbitrary, c =>
        {
            // Radix-2 FFT convolution of size n: |error| ≤ c·log2(n)·ε·‖K‖₂‖u‖₂ per output (each of the log2(n)
            // butterfly levels of three transforms adds ~ε relative to the 2-norm; c = 16 covers the three
            // transforms and the twiddles' own rounding). The direct sum adds its own T·ε·‖K‖₂‖u‖₂ (Cauchy–Schwarz),
            // and adding D·u rounds once more, ε·|o|.
            var x = c.S4dInputs();
            var ssm = DiagonalCase.Ssm(x, c.RealA);
            var (direct, fft) = (S4d.Convolution(x["u"], ssm), S4d.Fft(x["u"], ssm));
            var kernel = S4d.Kernel(ssm, c.T);
            double eps = Math.Pow(2, -53), levels = Math.Log2(2 * Math.Max(c.T, 1)) + 1;
            for (int b = 0; b < c.B; b++)
            {
                for (int h = 0; h < c.H; h++)
                {
                    double kNorm = Math.Sqrt(Enumerable.Range(0, c.T).Sum(l => kernel[h, l] * kernel[h, l]));
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
        }));

    [Fact]
    public void A_tiny_step_gives_the_first_order_response() =>
        PropertyRuns.Check(Prop.ForAll(DiagonalCase.Arbitrary, c =>
        {
            // dt ≈ 2e-10: Ā = 1 + O(dt·A), B̄ = dt·(1 + O(dt·A)), so o_t = f·Re(Σ_n C_n)·dt·Σ_{s≤t} u_s up to
            // O(dt·|A|·T) ≈ 1e-7 relative to f·Σ_n |C_n|·dt·Σ_{s≤t} |u_s| (Re(Σ C) may cancel, so that is the
            // scale); 1e-5 of it leaves room and still fails if B̄ lost its digits to cancellation. D is left out:
            // D·u ≈ 1 would round away the ~1e-10 response.
            var x = (c with { LogDtShift = -20 }).S4dInputs();
            x.Remove("D");
            var o = S4d.Recurrent(x["u"], DiagonalCase.Ssm(x, c.RealA));
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
        }));

    [Fact]
    public void Outputs_up_to_t_ignore_inputs_after_t() =>
        PropertyRuns.Check(Prop.ForAll(DiagonalCase.Arbitrary, c =>
        {
            var x = c.S4dInputs();
            var ssm = DiagonalCase.Ssm(x, c.RealA);
            int t = c.T == 0 ? 0 : c.Split % c.T;
            var changed = ChangedAfter(x["u"], 1, t + 1, new Random(c.Seed + 1));
            return SamePrefix(S4d.Recurrent(x["u"], ssm), S4d.Recurrent(changed, ssm), 1, t + 1)
                && SamePrefix(S4d.Convolution(x["u"], ssm), S4d.Convolution(changed, ssm), 1, t + 1);
        }));

    [Fact]
    public void Real_a_with_complex_parts_given_is_bad_input()
    {
        var x = new DiagonalCase(1, 4, 2, 2, 1, 1, false, 0, 0, 1).S4dInputs();
        var error = Assert.Throws<InputException>(() => S4d.Recurrent(x["u"], DiagonalCase.Ssm(x, realA: true)));
        Assert.Equal("A_imag", error.Tensor);
    }
}

public sealed class H3Tests
{
    // As for s4d: the same sums in different orders, plus the outer product and the sum over i, exact per term.
    private const double F64 = 1e-12;

    [Fact]
    public void Convolution_equals_recurrent() =>
        PropertyRuns.Check(Prop.ForAll(DiagonalCase.Arbitrary, c =>
        {
            var x = c.H3Inputs();
            var (shift, ssm) = (new H3Shift(x["shift_kernel"], x["shift_D"]), DiagonalCase.Ssm(x, false));
            var recurrent = H3.Recurrent(x["q"], x["k"], x["v"], shift, ssm);
            return Finite(recurrent) && TestTensors.Close(H3.Convolution(x["q"], x["k"], x["v"], shift, ssm), recurrent, F64);
        }));

    [Fact]
    public void With_head_dim_1_and_the_identity_shift_h3_is_q_times_s4d_of_k_times_v() =>
        PropertyRuns.Check(Prop.ForAll(DiagonalCase.Arbitrary, c =>
        {
            var x = (c with { D = 1 }).H3Inputs();
            var taps = Tensor.Zeros(c.H, 1, c.M);
            for (int h = 0; h < c.H; h++)
            {
                taps.Data[h * c.M] = 1; // k̃_t = k_t
            }
            var ssm = DiagonalCase.Ssm(x, false);
            var o = H3.Convolution(x["q"], x["k"], x["v"], new H3Shift(taps), ssm);
            var kv = new Tensor([c.B, c.T, c.H], x["k"].Data.Zip(x["v"].Data, (k, v) => k * v).ToArray());
            var s4d = S4d.Recurrent(kv, ssm);
            var expected = new Tensor([c.B, c.T, c.H, 1], x["q"].Data.Zip(s4d.Data, (q, y) => q * y).ToArray());
            return TestTensors.Close(o, expected, F64);
        }));

    [Fact]
    public void Outputs_up_to_t_ignore_inputs_after_t() =>
        PropertyRuns.Check(Prop.ForAll(DiagonalCase.Arbitrary, c =>
        {
            var x = c.H3Inputs();
            var (shift, ssm) = (new H3Shift(x["shift_kernel"], x["shift_D"]), DiagonalCase.Ssm(x, false));
            int t = c.T == 0 ? 0 : c.Split % c.T;
            var random = new Random(c.Seed + 1);
            var (q, k, v) = (ChangedAfter(x["q"], 1, t + 1, random), ChangedAfter(x["k"], 1, t + 1, random), ChangedAfter(x["v"], 1, t + 1, random));
            return SamePrefix(H3.Recurrent(x["q"], x["k"], x["v"], shift, ssm), H3.Recurrent(q, k, v, shift, ssm), 1, t + 1)
                && SamePrefix(H3.Convolution(x["q"], x["k"], x["v"], shift, ssm), H3.Convolution(q, k, v, shift, ssm), 1, t + 1);
        }));
}
