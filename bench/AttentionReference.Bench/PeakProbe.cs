using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttentionReference.Bench;

/// <summary>The machine's measured limits: FMA rates (GFLOP/s, an FMA = 2 FLOPs) and triad memory bandwidth (GB/s).</summary>
public sealed record Peak(
    int Cores,
    double F64Core256, double F32Core256, double? F64Core512, double? F32Core512,
    double F64All, double F32All, double TriadCoreGBs, double TriadAllGBs)
{
    /// <summary>The rate "% of peak" is taken against: all cores, f64, the widest accelerated vectors.</summary>
    public double F64PeakGflops => F64All;

    /// <summary>The probe as a markdown table.</summary>
    public string Table()
    {
        static string F(double? x) => x is { } v ? v.ToString("F1", System.Globalization.CultureInfo.InvariantCulture) : "—";
        return $"""
            | measure | 1 core | all {Cores} cores |
            |---|---:|---:|
            | f64 FMA, Vector256 (GFLOP/s) | {F(F64Core256)} | {(F64Core512 is null ? F(F64All) : "—")} |
            | f32 FMA, Vector256 (GFLOP/s) | {F(F32Core256)} | {(F32Core512 is null ? F(F32All) : "—")} |
            | f64 FMA, Vector512 (GFLOP/s) | {F(F64Core512)} | {(F64Core512 is null ? "—" : F(F64All))} |
            | f32 FMA, Vector512 (GFLOP/s) | {F(F32Core512)} | {(F32Core512 is null ? "—" : F(F32All))} |
            | triad a = b + s·c, f64 (GB/s) | {F(TriadCoreGBs)} | {F(TriadAllGBs)} |
            """;
    }
}

/// <summary>
/// Measures <see cref="Peak"/>: twelve independent FMA chains per thread (enough to hide the FMA latency on two
/// pipes), timed for about 0.2 s, best of three; all cores = one such thread per core through Parallel.For; the triad
/// streams three arrays of 16 Mi doubles (128 MiB each, far past any cache), counting 24 bytes per element as STREAM.
/// </summary>
public static class PeakProbe
{
    private const int Chains = 12;

    /// <summary>Runs the probe (a few seconds).</summary>
    public static Peak Measure()
    {
        int cores = Environment.ProcessorCount;
        bool has512 = Vector512.IsHardwareAccelerated;
        double f64Core256 = Rate(Fma256D, 1), f32Core256 = Rate(Fma256F, 1);
        double? f64Core512 = has512 ? Rate(Fma512D, 1) : null, f32Core512 = has512 ? Rate(Fma512F, 1) : null;
        double f64All = Rate(has512 ? Fma512D : Fma256D, cores), f32All = Rate(has512 ? Fma512F : Fma256F, cores);
        var (triad1, triadAll) = Triad(cores);
        return new Peak(cores, f64Core256, f32Core256, f64Core512, f32Core512, f64All, f32All, triad1, triadAll);
    }

    /// <summary>GFLOP/s of <paramref name="kernel"/> (which returns its FLOPs) on <paramref name="threads"/> threads.</summary>
    private static double Rate(Func<long, double> kernel, int threads)
    {
        long iterations = 1 << 16;
        kernel(iterations); // JIT and tier-up
        // Grow the count until one run takes about 0.2 s.
        while (Time(kernel, iterations, threads).Seconds < 0.05)
        {
            iterations *= 2;
        }
        iterations *= 4;
        double best = 0;
        for (int r = 0; r < 3; r++)
        {
            var (seconds, flops) = Time(kernel, iterations, threads);
            best = Math.Max(best, flops / seconds / 1e9);
        }
        return best;
    }

    private static (double Seconds, double Flops) Time(Func<long, double> kernel, long iterations, int threads)
    {
        var sums = new double[threads];
        long start = Stopwatch.GetTimestamp();
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, i => sums[i] = kernel(iterations));
        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        if (sums.Any(double.IsNaN))
        {
            throw new InvalidOperationException("the FMA probe produced NaN"); // also keeps the sums alive
        }
        return (seconds, sums.Sum() * iterations * Chains * 2);
    }

    // Each kernel returns its lane count folded with the chains' sum (s / s: NaN if a chain went bad), so the chains
    // stay live and cannot be removed as dead code; a·x + y with x slightly below 1 keeps them finite.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static double Fma256D(long n)
    {
        Vector256<double> x = Vector256.Create(0.9999999), y = Vector256.Create(1e-7);
        Vector256<double> a0 = Vector256.Create(1.0), a1 = a0 + y, a2 = a1 + y, a3 = a2 + y, a4 = a3 + y, a5 = a4 + y,
            a6 = a5 + y, a7 = a6 + y, a8 = a7 + y, a9 = a8 + y, a10 = a9 + y, a11 = a10 + y;
        for (long i = 0; i < n; i++)
        {
            a0 = Vector256.FusedMultiplyAdd(a0, x, y); a1 = Vector256.FusedMultiplyAdd(a1, x, y);
            a2 = Vector256.FusedMultiplyAdd(a2, x, y); a3 = Vector256.FusedMultiplyAdd(a3, x, y);
            a4 = Vector256.FusedMultiplyAdd(a4, x, y); a5 = Vector256.FusedMultiplyAdd(a5, x, y);
            a6 = Vector256.FusedMultiplyAdd(a6, x, y); a7 = Vector256.FusedMultiplyAdd(a7, x, y);
            a8 = Vector256.FusedMultiplyAdd(a8, x, y); a9 = Vector256.FusedMultiplyAdd(a9, x, y);
            a10 = Vector256.FusedMultiplyAdd(a10, x, y); a11 = Vector256.FusedMultiplyAdd(a11, x, y);
        }
        double s = Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
        return Vector256<double>.Count * s / s;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static double Fma256F(long n)
    {
        Vector256<float> x = Vector256.Create(0.99999f), y = Vector256.Create(1e-5f);
        Vector256<float> a0 = Vector256.Create(1f), a1 = a0 + y, a2 = a1 + y, a3 = a2 + y, a4 = a3 + y, a5 = a4 + y,
            a6 = a5 + y, a7 = a6 + y, a8 = a7 + y, a9 = a8 + y, a10 = a9 + y, a11 = a10 + y;
        for (long i = 0; i < n; i++)
        {
            a0 = Vector256.FusedMultiplyAdd(a0, x, y); a1 = Vector256.FusedMultiplyAdd(a1, x, y);
            a2 = Vector256.FusedMultiplyAdd(a2, x, y); a3 = Vector256.FusedMultiplyAdd(a3, x, y);
            a4 = Vector256.FusedMultiplyAdd(a4, x, y); a5 = Vector256.FusedMultiplyAdd(a5, x, y);
            a6 = Vector256.FusedMultiplyAdd(a6, x, y); a7 = Vector256.FusedMultiplyAdd(a7, x, y);
            a8 = Vector256.FusedMultiplyAdd(a8, x, y); a9 = Vector256.FusedMultiplyAdd(a9, x, y);
            a10 = Vector256.FusedMultiplyAdd(a10, x, y); a11 = Vector256.FusedMultiplyAdd(a11, x, y);
        }
        float s = Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
        return Vector256<float>.Count * (double)s / s;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static double Fma512D(long n)
    {
        Vector512<double> x = Vector512.Create(0.9999999), y = Vector512.Create(1e-7);
        Vector512<double> a0 = Vector512.Create(1.0), a1 = a0 + y, a2 = a1 + y, a3 = a2 + y, a4 = a3 + y, a5 = a4 + y,
            a6 = a5 + y, a7 = a6 + y, a8 = a7 + y, a9 = a8 + y, a10 = a9 + y, a11 = a10 + y;
        for (long i = 0; i < n; i++)
        {
            a0 = Vector512.FusedMultiplyAdd(a0, x, y); a1 = Vector512.FusedMultiplyAdd(a1, x, y);
            a2 = Vector512.FusedMultiplyAdd(a2, x, y); a3 = Vector512.FusedMultiplyAdd(a3, x, y);
            a4 = Vector512.FusedMultiplyAdd(a4, x, y); a5 = Vector512.FusedMultiplyAdd(a5, x, y);
            a6 = Vector512.FusedMultiplyAdd(a6, x, y); a7 = Vector512.FusedMultiplyAdd(a7, x, y);
            a8 = Vector512.FusedMultiplyAdd(a8, x, y); a9 = Vector512.FusedMultiplyAdd(a9, x, y);
            a10 = Vector512.FusedMultiplyAdd(a10, x, y); a11 = Vector512.FusedMultiplyAdd(a11, x, y);
        }
        double s = Vector512.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
        return Vector512<double>.Count * s / s;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static double Fma512F(long n)
    {
        Vector512<float> x = Vector512.Create(0.99999f), y = Vector512.Create(1e-5f);
        Vector512<float> a0 = Vector512.Create(1f), a1 = a0 + y, a2 = a1 + y, a3 = a2 + y, a4 = a3 + y, a5 = a4 + y,
            a6 = a5 + y, a7 = a6 + y, a8 = a7 + y, a9 = a8 + y, a10 = a9 + y, a11 = a10 + y;
        for (long i = 0; i < n; i++)
        {
            a0 = Vector512.FusedMultiplyAdd(a0, x, y); a1 = Vector512.FusedMultiplyAdd(a1, x, y);
            a2 = Vector512.FusedMultiplyAdd(a2, x, y); a3 = Vector512.FusedMultiplyAdd(a3, x, y);
            a4 = Vector512.FusedMultiplyAdd(a4, x, y); a5 = Vector512.FusedMultiplyAdd(a5, x, y);
            a6 = Vector512.FusedMultiplyAdd(a6, x, y); a7 = Vector512.FusedMultiplyAdd(a7, x, y);
            a8 = Vector512.FusedMultiplyAdd(a8, x, y); a9 = Vector512.FusedMultiplyAdd(a9, x, y);
            a10 = Vector512.FusedMultiplyAdd(a10, x, y); a11 = Vector512.FusedMultiplyAdd(a11, x, y);
        }
        float s = Vector512.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
        return Vector512<float>.Count * (double)s / s;
    }

    /// <summary>Triad bandwidth on one core and on all, GB/s (best of five).</summary>
    private static (double One, double All) Triad(int cores)
    {
        const int n = 16 << 20;
        double[] a = new double[n], b = new double[n], c = new double[n];
        Parallel.For(0, cores, p => { for (int i = p * (n / cores); i < (p + 1) * (n / cores); i++) { b[i] = 1; c[i] = 2; } });
        return (Best(1), Best(cores));

        double Best(int threads)
        {
            double best = 0;
            for (int r = 0; r < 5; r++)
            {
                long start = Stopwatch.GetTimestamp();
                Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, p =>
                {
                    int from = (int)((long)n * p / threads), to = (int)((long)n * (p + 1) / threads);
                    System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(c.AsSpan(from, to - from), 3.0, b.AsSpan(from, to - from), a.AsSpan(from, to - from));
                });
                best = Math.Max(best, 3.0 * sizeof(double) * n / Stopwatch.GetElapsedTime(start).TotalSeconds / 1e9);
            }
            return best;
        }
    }
}
