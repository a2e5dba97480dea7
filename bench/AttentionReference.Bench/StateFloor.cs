using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using AttentionReference.Forms.Common;

namespace AttentionReference.Bench;

/// <summary>
/// The state a recurrent variant carries and how often each step must touch it: <paramref name="Units"/> independent
/// recurrences (a (batch, head) pair, or a channel) of <paramref name="Steps"/> steps each, every step sweeping a
/// <paramref name="Rows"/> × <paramref name="Columns"/> state <paramref name="Passes"/> times (a pass loads and stores
/// each element once).
/// </summary>
public sealed record StateShape(double Units, int Steps, int Rows, int Columns, int Passes)
{
    /// <summary>State elements touched in all: passes × units × steps × rows × columns.</summary>
    public double ElementSteps => (double)Passes * Units * Steps * Rows * Columns;
}

/// <summary>
/// The memory/latency floor of a recurrent variant: the time the machine needs only to sweep the state it carries,
/// each step, as many times as the recurrence must (the rest of a step, its q, k, v rows and its exps, is O(K + V)
/// against the state's O(K·V)). The sweep is measured, not modelled: one thread per core, each with its own state of
/// the case's shape (kept in cache where it fits, as a real step keeps it), updated in place by the cheapest
/// pass a step can make, s ← α·s + κ·x row by row (one load, one fused multiply-add, one store per element, the
/// widest accelerated vectors), repeated as the steps repeat, so the dependence of step t + 1 on step t is in it too.
/// </summary>
/// <remarks>
/// Passes per step: 1 for the linear and gated linear recurrences (the decay, the write k vᵀ and the read Sᵀq can fuse
/// into one pass; the definitions now make three, a fused fast path being out of the reference's scope) and for ssd, mamba, power and based (the same shape over their own
/// states: N × P; a channel's N modes; D × V power features; 1 + K + K² Taylor features × V); 2 for the delta rule
/// family (Sᵀk must be complete before the write that needs it: a read pass, then the fused pass). s4d, h3 and nats_l
/// are left out (complex modes, a two-level state, a routed mix: no one sweep prices them).
/// </remarks>
public static class StateFloor
{
    private static readonly Dictionary<(int Rows, int Columns), double> s_rates = [];

    /// <summary>The state <paramref name="c"/> carries, or null where it is not a recurrence of a modelled form.</summary>
    public static StateShape? Shape(BenchCase c)
    {
        ArgumentNullException.ThrowIfNull(c);
        if (c.Variant != "recurrent")
        {
            return null;
        }
        BenchSize s = c.Size;
        double heads = (double)s.B * s.H;
        return c.Form.Name switch
        {
            "linear" or "retention" or "simple_gla" or "gla" or "hgrn2" or "rwkv6" or "mlstm" or "ssd" =>
                new StateShape(heads, s.T, s.K, s.V, 1),
            "delta_rule" or "gated_delta_rule" or "kda" or "rwkv7" => new StateShape(heads, s.T, s.K, s.V, 2),
            "mamba" => new StateShape((double)s.B * s.H * s.V, s.T, 1, 16, 1), // D = H·V channels of N = 16 modes
            "power" => new StateShape(heads, s.T, (int)FlopModel.Binomial(s.K + c.Parameters.GetInt("deg", 2) - 1, c.Parameters.GetInt("deg", 2)), s.V, 1),
            "based" => new StateShape(heads, s.T, 1 + s.K + s.K * s.K, s.V, 1),
            _ => null,
        };
    }

    /// <summary>The floor of <paramref name="c"/> in seconds on all cores (NaN where <see cref="Shape"/> is null).</summary>
    public static double Seconds(BenchCase c)
    {
        if (Shape(c) is not { } shape)
        {
            return double.NaN;
        }
        double rate = Rate(shape.Rows, shape.Columns, Environment.ProcessorCount);
        // Fewer units than cores leave cores idle: the floor is then the busiest core's share.
        double perCore = Math.Ceiling(shape.Units / Environment.ProcessorCount) * Environment.ProcessorCount / shape.Units;
        return shape.ElementSteps * Math.Max(1, perCore) / rate;
    }

    /// <summary>
    /// State elements swept per second by <paramref name="threads"/> threads, each over its own
    /// <paramref name="rows"/> × <paramref name="columns"/> state; measured once per shape and kept.
    /// </summary>
    public static double Rate(int rows, int columns, int threads)
    {
        lock (s_rates)
        {
            if (!s_rates.TryGetValue((rows, columns), out double rate))
            {
                rate = Measure(rows, columns, threads);
                s_rates[(rows, columns)] = rate;
            }
            return rate;
        }
    }

    /// <summary>The sweep rates of the bench's two state sizes (K = V = 64 and 128) as markdown rows for <c>--peak</c>.</summary>
    public static string Table()
    {
        int cores = Environment.ProcessorCount;
        var rows = new System.Text.StringBuilder();
        foreach (int d in (int[])[64, 128])
        {
            string one = (Measure(d, d, 1) / 1e9).ToString("F2", System.Globalization.CultureInfo.InvariantCulture);
            string all = (Rate(d, d, cores) / 1e9).ToString("F2", System.Globalization.CultureInfo.InvariantCulture);
            rows.Append(System.Globalization.CultureInfo.InvariantCulture, $"| state sweep s ← α·s + κ·x, {d}×{d} f64 ({d * d * 8 / 1024} KiB) (G elements/s) | {one} | {all} |\n");
        }
        return rows.ToString().TrimEnd();
    }

    private static double Measure(int rows, int columns, int threads)
    {
        // Aligned as the forms' states are (RowBlock.AlignedZeros): a floor measured on a state 16 bytes off a cache
        // line would be up to 1.6x too slow, and flatter every ratio over it.
        var states = Enumerable.Range(0, threads).Select(_ => RowBlock.AlignedZeros(rows, columns)).ToArray();
        var x = Enumerable.Range(0, columns).Select(i => 1e-3 * (i % 7)).ToArray();
        int sweeps = 1;
        Sweep(states[0].Contiguous(), x, columns, 1); // JIT
        // Grow the sweeps until one run takes about 0.1 s, then take the best of three.
        while (Time(states, x, columns, sweeps) < 0.03)
        {
            sweeps *= 2;
        }
        sweeps *= 3;
        double best = double.PositiveInfinity;
        for (int r = 0; r < 3; r++)
        {
            best = Math.Min(best, Time(states, x, columns, sweeps));
        }
        return (double)threads * rows * columns * sweeps / best;
    }

    private static double Time(RowBlock[] states, double[] x, int columns, int sweeps)
    {
        long start = Stopwatch.GetTimestamp();
        Parallel.For(0, states.Length, new ParallelOptions { MaxDegreeOfParallelism = states.Length }, i => Sweep(states[i].Contiguous(), x, columns, sweeps));
        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        if (states.Any(s => double.IsNaN(s[0][0])))
        {
            throw new InvalidOperationException("the state sweep produced NaN"); // also keeps the states alive
        }
        return seconds;
    }

    /// <summary>s ← α·s + κ·x for every row s of <paramref name="state"/>, <paramref name="sweeps"/> times.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Sweep(Span<double> state, double[] x, int columns, int sweeps)
    {
        const double α = 0.999, κ = 1e-3;
        ref double xs = ref x[0];
        for (int sweep = 0; sweep < sweeps; sweep++)
        {
            for (int row = 0; row < state.Length; row += columns)
            {
                ref double s = ref state[row];
                int i = 0;
                if (Vector512.IsHardwareAccelerated)
                {
                    for (; i + Vector512<double>.Count <= columns; i += Vector512<double>.Count)
                    {
                        Vector512.FusedMultiplyAdd(Vector512.Create(κ), Vector512.LoadUnsafe(ref xs, (nuint)i),
                            Vector512.Create(α) * Vector512.LoadUnsafe(ref s, (nuint)i)).StoreUnsafe(ref s, (nuint)i);
                    }
                }
                for (; i + Vector256<double>.Count <= columns; i += Vector256<double>.Count)
                {
                    Vector256.FusedMultiplyAdd(Vector256.Create(κ), Vector256.LoadUnsafe(ref xs, (nuint)i),
                        Vector256.Create(α) * Vector256.LoadUnsafe(ref s, (nuint)i)).StoreUnsafe(ref s, (nuint)i);
                }
                for (; i < columns; i++)
                {
                    Unsafe.Add(ref s, i) = Math.FusedMultiplyAdd(κ, x[i], α * Unsafe.Add(ref s, i));
                }
            }
        }
    }
}
