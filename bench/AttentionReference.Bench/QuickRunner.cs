using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using AttentionReference.Tensors;

namespace AttentionReference.Bench;

/// <summary>
/// One timed case: median and fastest of the repeats, bytes allocated per run, or why it was skipped; for OpenCL also
/// the median of the device's kernel time per run (NaN where the backend reports none).
/// </summary>
public sealed record QuickResult(BenchCase Case, double MedianSeconds, double MinSeconds, int Repeats, double AllocatedBytes, string? Skipped,
    double KernelSeconds = double.NaN)
{
    /// <summary>GFLOP/s at the median time.</summary>
    public double Gflops => Case.Flops / MedianSeconds / 1e9;

    /// <summary>GFLOP/s at the median kernel time.</summary>
    public double KernelGflops => Case.Flops / KernelSeconds / 1e9;
}

/// <summary>
/// The plain runner (<c>--cpu</c>, <c>--opencl</c>): no BenchmarkDotNet, no SDK, so it runs from a self-contained
/// publish. Per case: inputs made for <c>sets</c> independent random sets, one warm-up run, then repeats that rotate
/// through the sets, timed by Stopwatch around the whole call (for OpenCL: upload, kernels, download), median reported.
/// Given <c>kernelSeconds</c> (the device time of the last call, from OpenCL events), the rows also carry the median
/// kernel-only time and its GFLOP/s and % of peak. Repeats stop early once a case has used <c>maxSeconds</c> (at least
/// one timed run always happens). Rows are printed as each case finishes, as a markdown table.
/// </summary>
public sealed class QuickRunner(int repeats, int sets, double maxSeconds, double peakGflops, TextWriter output, Func<double>? kernelSeconds = null,
    Func<BenchCase, double>? floorSeconds = null)
{
    private static readonly JsonSerializerOptions s_json = new() { WriteIndented = true };

    private const string BaseColumns = "| form | variant | size | median ms | min ms | runs | GFLOP/s | % of peak | alloc MB/run |";
    private const string BaseRule = "|---|---|---|---:|---:|---:|---:|---:|---:|";

    /// <summary>The table's two head lines, with the kernel columns (OpenCL) or the floor columns (CPU) where asked.</summary>
    private static string Header(bool withKernel, bool withFloor) =>
        BaseColumns + (withKernel ? " kernel ms | kernel GFLOP/s | kernel % of peak |" : "") + (withFloor ? " floor ms | × floor |" : "") + "\n" +
        BaseRule + (withKernel ? "---:|---:|---:|" : "") + (withFloor ? "---:|---:|" : "");

    /// <summary>Times each case through <paramref name="run"/>; <paramref name="skip"/> names cases the backend cannot run (null = runnable).</summary>
    public IReadOnlyList<QuickResult> Run(IEnumerable<BenchCase> cases, Func<BenchCase, IReadOnlyDictionary<string, Tensor>, object> run,
        Func<BenchCase, string?>? skip = null)
    {
        ArgumentNullException.ThrowIfNull(cases);
        ArgumentNullException.ThrowIfNull(run);
        output.WriteLine(Header(kernelSeconds is not null, floorSeconds is not null));
        var results = new List<QuickResult>();
        foreach (BenchCase c in cases)
        {
            QuickResult result = Time(c, run, skip);
            results.Add(result);
            double floor = floorSeconds?.Invoke(c) ?? double.NaN;
            output.WriteLine(Row(result, peakGflops, withKernel: kernelSeconds is not null) + (floorSeconds is null ? "" : FloorCells(result, floor)));
            output.Flush();
        }
        return results;
    }

    private QuickResult Time(BenchCase c, Func<BenchCase, IReadOnlyDictionary<string, Tensor>, object> run, Func<BenchCase, string?>? skip)
    {
        if (skip?.Invoke(c) is { } reason)
        {
            return new QuickResult(c, double.NaN, double.NaN, 0, double.NaN, reason);
        }
        try
        {
            var inputs = Enumerable.Range(0, sets).Select(c.Inputs).ToArray();
            var first = Stopwatch.StartNew();
            GC.KeepAlive(run(c, inputs[0])); // warm-up: JIT, OpenCL program build, caches
            double warmup = first.Elapsed.TotalSeconds;
            var times = new List<double>();
            var kernelTimes = new List<double>();
            long allocated = 0;
            double spent = warmup;
            for (int r = 0; r < repeats && (r == 0 || spent < maxSeconds); r++)
            {
                long before = GC.GetTotalAllocatedBytes(precise: true);
                long start = Stopwatch.GetTimestamp();
                GC.KeepAlive(run(c, inputs[(r + 1) % sets]));
                double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
                allocated += GC.GetTotalAllocatedBytes(precise: true) - before;
                times.Add(seconds);
                kernelTimes.Add(kernelSeconds?.Invoke() ?? double.NaN);
                spent += seconds;
            }
            times.Sort();
            kernelTimes.Sort();
            return new QuickResult(c, Median(times), times[0], times.Count, (double)allocated / times.Count, null, Median(kernelTimes));
        }
        catch (InputException e)
        {
            return new QuickResult(c, double.NaN, double.NaN, 0, double.NaN, e.Message);
        }
    }

    private static double Median(List<double> sorted) =>
        sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;

    /// <summary>A markdown row of <paramref name="r"/>, with the kernel-time columns where <paramref name="withKernel"/>.</summary>
    public static string Row(QuickResult r, double peakGflops, bool withKernel = false)
    {
        ArgumentNullException.ThrowIfNull(r);
        string size = r.Case.Size.Name;
        string kernelEmpty = withKernel ? " | | |" : "";
        if (r.Skipped is not null)
        {
            return $"| {r.Case.Form.Name} | {r.Case.Variant}{(r.Case.Backward ? " backward" : "")} | {size} | skipped: {r.Skipped.Replace('|', '/')} | | | | | |{kernelEmpty}";
        }
        string kernel = withKernel
            ? $" {Num(r.KernelSeconds * 1e3)} | {Num(r.KernelGflops)} | {Num(100 * r.KernelGflops / peakGflops)} |"
            : "";
        return $"| {r.Case.Form.Name} | {r.Case.Variant}{(r.Case.Backward ? " backward" : "")} | {size} | {Num(r.MedianSeconds * 1e3)} | {Num(r.MinSeconds * 1e3)} | {r.Repeats} " +
               $"| {Num(r.Gflops)} | {Num(100 * r.Gflops / peakGflops)} | {Num(r.AllocatedBytes / 1e6)} |{kernel}";
    }

    /// <summary>" floor ms | × floor |": the state-sweep floor (<see cref="StateFloor"/>) and the median over it; blank where none.</summary>
    public static string FloorCells(QuickResult r, double floorSeconds)
    {
        ArgumentNullException.ThrowIfNull(r);
        return double.IsNaN(floorSeconds) || r.Skipped is not null ? " | |" : $" {Num(floorSeconds * 1e3)} | {Num(r.MedianSeconds / floorSeconds)} |";
    }

    /// <summary>A number for a table: "—" for NaN, 3 significant digits otherwise.</summary>
    public static string Num(double x) =>
        double.IsNaN(x) || double.IsInfinity(x) ? "—"
        : Math.Abs(x) >= 100 ? x.ToString("F0", CultureInfo.InvariantCulture)
        : Math.Abs(x) >= 10 ? x.ToString("F1", CultureInfo.InvariantCulture)
        : x.ToString("G3", CultureInfo.InvariantCulture);

    /// <summary>The results as JSON (form, variant, size, seconds, flops), the file compare_torch.py reads with --ours.</summary>
    public static string Json(IEnumerable<QuickResult> results, string backend)
    {
        var rows = results.Where(r => r.Skipped is null).Select(r => new Dictionary<string, object>
        {
            ["form"] = r.Case.Form.Name,
            ["variant"] = r.Case.Variant,
            ["backend"] = backend,
            ["size"] = r.Case.Size.Name,
            ["B"] = r.Case.Size.B, ["T"] = r.Case.Size.T, ["H"] = r.Case.Size.H, ["K"] = r.Case.Size.K, ["V"] = r.Case.Size.V,
            ["median_s"] = r.MedianSeconds,
            ["min_s"] = r.MinSeconds,
            ["kernel_s"] = double.IsNaN(r.KernelSeconds) ? 0 : r.KernelSeconds, // the device's kernel time; 0 = not measured
            ["flops"] = double.IsNaN(r.Case.Flops) ? 0 : r.Case.Flops,
        });
        return JsonSerializer.Serialize(rows, s_json);
    }

    /// <summary>"machine: … cores, SIMD Vector512, …" for the head of a results file (the width the reference computes with).</summary>
    public static string MachineLine()
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"{Environment.ProcessorCount} cores, ");
        text.Append(CultureInfo.InvariantCulture, $"SIMD {AttentionReference.Numerics.VectorKernels.SimdWidth}");
        text.Append(CultureInfo.InvariantCulture, $", {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}");
        return text.ToString();
    }
}
