using System.Diagnostics;
using System.Numerics;
using ILGPU;

namespace AttentionReference.Gpu;

/// <summary>
/// The device's fused multiply-add rate: every thread runs eight independent chains y ← y·a + b (a multiply-add each,
/// which the PTX backend contracts to one fma) for a fixed number of rounds, so the rate is the device's, not its
/// memory's. Two FLOPs per multiply-add.
/// </summary>
internal static class FmaRate
{
    private const int Rounds = 4096, Chains = 8;

    /// <summary>The kernel's argument: the multiplier, the addend and where each thread leaves its sum.</summary>
    internal struct Chain<Real> where Real : unmanaged
    {
        public Real A, B;
        public ArrayView<Real> Sink;
    }

    /// <summary>Eight chains of <see cref="Rounds"/> multiply-adds, summed into the sink so none is dead code.</summary>
    public static void Fma<Real>(Index1D i, Chain<Real> c) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        Real y0 = c.B, y1 = c.B + c.B, y2 = c.A, y3 = c.A + c.B, y4 = y1 + y1, y5 = y2 + y2, y6 = y3 + y3, y7 = y4 + y4;
        for (int r = 0; r < Rounds; r++)
        {
            y0 = y0 * c.A + c.B;
            y1 = y1 * c.A + c.B;
            y2 = y2 * c.A + c.B;
            y3 = y3 * c.A + c.B;
            y4 = y4 * c.A + c.B;
            y5 = y5 * c.A + c.B;
            y6 = y6 * c.A + c.B;
            y7 = y7 * c.A + c.B;
        }
        c.Sink[i] = y0 + y1 + y2 + y3 + y4 + y5 + y6 + y7;
    }

    /// <summary>GFLOP/s of <see cref="Fma{Real}"/> over enough threads to fill the device, best of three timed launches.</summary>
    public static double Measure<Real>(GpuDevice device) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int threads = device.IsCuda ? 1 << 20 : 1 << 10;
        using DeviceBuffers buffers = device.Buffers();
        var chain = new Chain<Real> { A = Real.CreateTruncating(0.999999), B = Real.CreateTruncating(1e-6), Sink = buffers.Zeros<Real>(threads) };
        device.Launch<Chain<Real>>(Fma, threads, chain); // compile and warm up
        device.Synchronize();
        double best = double.MaxValue;
        for (int run = 0; run < 3; run++)
        {
            var clock = Stopwatch.StartNew();
            device.Launch<Chain<Real>>(Fma, threads, chain);
            device.Synchronize();
            best = Math.Min(best, clock.Elapsed.TotalSeconds);
        }
        return 2.0 * Chains * Rounds * threads / best / 1e9;
    }
}
