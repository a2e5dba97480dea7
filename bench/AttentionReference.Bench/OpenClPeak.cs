using AttentionReference.OpenCL;

namespace AttentionReference.Bench;

/// <summary>
/// The OpenCL device's measured FMA rate (GFLOP/s, an FMA = 2 FLOPs): a kernel of eight independent fma() chains per
/// work-item over 2²⁰ work-items, timed by its profiling event (the clock of the bench's kernel-time columns), best of
/// three. It runs through the backend's own <see cref="OpenClContext"/>, so it measures the device exactly as the
/// kernels see it.
/// </summary>
public static class OpenClPeak
{
    // `real` comes from the preamble every program is built with (Kernels/Precision.cl).
    private const string Source = """
        __kernel void fma_chains(__global real* out, int n, real x, real y)
        {
            real a0 = (real)get_global_id(0) * (real)1e-9, a1 = a0 + y, a2 = a1 + y, a3 = a2 + y,
                 a4 = a3 + y, a5 = a4 + y, a6 = a5 + y, a7 = a6 + y;
            for (int i = 0; i < n; i++) {
                a0 = fma(a0, x, y); a1 = fma(a1, x, y); a2 = fma(a2, x, y); a3 = fma(a3, x, y);
                a4 = fma(a4, x, y); a5 = fma(a5, x, y); a6 = fma(a6, x, y); a7 = fma(a7, x, y);
            }
            out[get_global_id(0)] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
        }
        """;

    private const int Chains = 8, WorkItems = 1 << 20;

    /// <summary>GFLOP/s of <paramref name="device"/> in <paramref name="precision"/>.</summary>
    public static double Measure(OpenClDevice device, Precision precision)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var context = new OpenClContext(device);
        using OpenClKernel kernel = context.KernelFromSource("fma_probe", Source, "fma_chains", precision);
        using DeviceBuffer output = context.Allocate(WorkItems, precision);
        // x just below 1 and a small y keep every chain finite for any iteration count.
        kernel.Arg(0, output).Arg(2, precision == Precision.F64 ? 0.9999999 : 0.99999, precision)
            .Arg(3, precision == Precision.F64 ? 1e-7 : 1e-5, precision);
        int iterations = 256;
        Time(context, kernel, iterations); // warm up
        while (Time(context, kernel, iterations) < 0.05 && iterations < (1 << 24))
        {
            iterations *= 2;
        }
        double best = double.MaxValue;
        for (int r = 0; r < 3; r++)
        {
            best = Math.Min(best, Time(context, kernel, iterations));
        }
        return (double)WorkItems * iterations * Chains * 2 / best / 1e9;
    }

    private static double Time(OpenClContext context, OpenClKernel kernel, int iterations)
    {
        kernel.Arg(1, iterations);
        context.ResetKernelSeconds();
        context.Run(kernel, WorkItems, local: 256);
        return context.KernelSeconds;
    }
}
