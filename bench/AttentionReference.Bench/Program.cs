using System.Globalization;
using AttentionReference.Bench;
using AttentionReference.OpenCL;
using AttentionReference.Tensors;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Filters;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

// Modes (bench/README.md):
//   --peak                       the machine's FMA rates, triad bandwidth and state-sweep rates
//   --cpu    [options]           the plain runner on the CPU reference (no SDK needed: works when published)
//   --gpu    [options]           the plain runner through GpuBackend (ILGPU: CUDA, else the CPU accelerator), with kernel times
//   --opencl [options]           the plain runner through OpenClBackend, with the device's FMA rate
//   --smoke  [--family …]        BenchmarkDotNet, each case once at the tiny size, in process
//   --list   [--size S]          the cases and their FLOP counts
//   (anything else)              BenchmarkDotNet's own command line (needs the SDK): --filter, --anyCategories, …
// Options: --size tiny|small|layer|gpu|B,T,H,K,V   --family F   --form F   --variant V   (each may list several with commas)
//          --repeats N (default 5)   --sets N (rotating input sets, default 3)   --max-seconds S (per case, default 60)
//          --device S   --precision f64|f32   --peak-gflops X (skip the probe)   --out FILE.md   --json FILE.json
var options = Options.Parse(args);
var filter = new CaseFilter(options.Get("--family"), options.Get("--form"), options.Get("--variant"));

if (options.Has("--peak"))
{
    Console.WriteLine($"machine: {QuickRunner.MachineLine()}");
    Console.WriteLine(PeakProbe.Measure().Table());
    Console.WriteLine(StateFloor.Table());
    return 0;
}
if (options.Has("--list"))
{
    BenchSize size = BenchSize.Parse(options.Get("--size") ?? "small");
    Console.WriteLine($"| form | family | variant | GFLOP at {size} |\n|---|---|---|---:|");
    foreach (BenchCase c in BenchCase.All(size, filter))
    {
        Console.WriteLine($"| {c.Form.Name} | {c.Family} | {c.Variant} | {QuickRunner.Num(c.Flops / 1e9)} |");
    }
    return 0;
}
if (options.Has("--cpu") || options.Has("--gpu") || options.Has("--opencl"))
{
    return Quick(options, filter);
}

// BenchmarkDotNet.
double peak = options.GetDouble("--peak-gflops") ?? PeakProbe.Measure().F64PeakGflops;
ManualConfig config = ManualConfig.Create(DefaultConfig.Instance)
    .AddColumn(new FlopColumn(false, peak), new FlopColumn(true, peak))
    .AddFilter(new SimpleFilter(b => b.Parameters["Case"] is not BenchCase c || filter.Matches(c.Form, c.Variant)));
if (options.Has("--smoke"))
{
    // Each case once, in this process: a check that every benchmark runs, not a measurement.
    config = config.AddJob(Job.Dry.WithToolchain(InProcessEmitToolchain.Instance))
        .WithOptions(ConfigOptions.DisableOptimizationsValidator);
    var summary = BenchmarkRunner.Run<TinyBenchmarks>(config);
    return summary.Reports.All(r => r.Success) && !summary.ValidationErrors.Any(e => e.IsCritical) ? 0 : 1;
}
string[] rest = options.Rest;
if (options.Get("--size") is { } sizeName)
{
    rest = [.. rest, "--anyCategories", sizeName];
}
if (!rest.Contains("--filter") && !rest.Contains("-f"))
{
    rest = [.. rest, "--filter", "*"];
}
if (!rest.Contains("--buildTimeout"))
{
    rest = [.. rest, "--buildTimeout", "900"]; // BenchmarkDotNet's 120 s is too short for a build on a busy 2-core machine
}
if (!rest.Contains("--anyCategories") && !rest.Contains("--allCategories"))
{
    rest = [.. rest, "--anyCategories", "small"]; // the layer size only on request
}
// The out-of-process toolchain builds a copy of this project: run from the repository root (it looks for the .csproj below).
var summaries = BenchmarkSwitcher.FromTypes([typeof(TinyBenchmarks), typeof(SmallBenchmarks), typeof(LayerBenchmarks)]).Run(rest, config);
return summaries.All(s => s.Reports.All(r => r.Success) && !s.ValidationErrors.Any(e => e.IsCritical)) ? 0 : 1;

static int Quick(Options options, CaseFilter filter)
{
    BenchSize size = BenchSize.Parse(options.Get("--size") ?? "small");
    int repeats = options.GetInt("--repeats") ?? 5, sets = options.GetInt("--sets") ?? 3;
    double maxSeconds = options.GetDouble("--max-seconds") ?? 60;
    var cases = BenchCase.All(size, filter);
    var log = new StringWriter();
    var output = new TeeWriter(Console.Out, log);
    output.WriteLine($"machine: {QuickRunner.MachineLine()}");
    IReadOnlyList<QuickResult> results;
    string backendName;
    if (options.Has("--gpu"))
    {
        var precision = options.Get("--precision") == "f32" ? AttentionReference.Gpu.Precision.F32 : AttentionReference.Gpu.Precision.F64;
        using var backend = new AttentionReference.Gpu.GpuBackend(options.Get("--device"), precision) { TimeKernels = true };
        double peak = options.GetDouble("--peak-gflops") ?? backend.MeasureFmaGflops();
        output.WriteLine($"device: {backend.DeviceName}; measured FMA rate {peak.ToString("F0", CultureInfo.InvariantCulture)} GFLOP/s (% of peak is against it)");
        output.WriteLine($"size: {size}, {precision}, median of up to {repeats} runs rotating {sets} input sets, wall time around GpuBackend.Run (binding, upload, kernels, download); kernel columns: the kernels' own time (each launch timed to its end)\n");
        var runner = new QuickRunner(repeats, sets, maxSeconds, peak, output, () => backend.LastRunKernelSeconds);
        results = runner.Run(cases, (c, inputs) => backend.Run(c.Form, c.Variant, inputs, c.Parameters), c =>
        {
            var tiny = c with { Size = BenchSize.Tiny };
            try
            {
                backend.Run(c.Form, c.Variant, tiny.Inputs(), c.Parameters);
                return null;
            }
            catch (InputException e) when (e.Unsupported)
            {
                return "no ILGPU kernel";
            }
        });
        backendName = "gpu";
    }
    else if (options.Has("--opencl"))
    {
        Precision precision = options.Get("--precision") == "f32" ? Precision.F32 : Precision.F64;
        using var backend = new OpenClBackend(options.Get("--device"), precision);
        double peak = options.GetDouble("--peak-gflops") ?? OpenClPeak.Measure(backend.Device, precision);
        output.WriteLine($"device: {backend.Device.Description}; measured {precision} FMA rate {peak.ToString("F0", CultureInfo.InvariantCulture)} GFLOP/s (% of peak is against it)");
        if (precision == Precision.F64)
        {
            output.WriteLine($"device f32 FMA rate: {OpenClPeak.Measure(backend.Device, Precision.F32).ToString("F0", CultureInfo.InvariantCulture)} GFLOP/s");
        }
        output.WriteLine($"size: {size}, {precision}, median of up to {repeats} runs rotating {sets} input sets, wall time around OpenClBackend.Run (upload + kernels + download); kernel columns: the kernels' own device time (OpenCL profiling events)\n");
        var runner = new QuickRunner(repeats, sets, maxSeconds, peak, output, () => backend.LastRunKernelSeconds);
        // A form without a kernel says so on tiny inputs; only the rest are made at full size.
        results = runner.Run(cases, (c, inputs) => backend.Run(c.Form, c.Variant, inputs, c.Parameters), c =>
        {
            var tiny = c with { Size = BenchSize.Tiny };
            try
            {
                backend.Run(c.Form, c.Variant, tiny.Inputs(), c.Parameters);
                return null;
            }
            catch (InputException e) when (e.Message.Contains("no OpenCL kernel", StringComparison.Ordinal))
            {
                return "no OpenCL kernel";
            }
        });
        backendName = "opencl";
    }
    else
    {
        Peak peak = options.GetDouble("--peak-gflops") is { } given
            ? new Peak(Environment.ProcessorCount, double.NaN, double.NaN, null, null, given, double.NaN, double.NaN, double.NaN)
            : PeakProbe.Measure();
        output.WriteLine($"measured all-core f64 FMA rate {peak.F64PeakGflops.ToString("F1", CultureInfo.InvariantCulture)} GFLOP/s (% of peak is against it)");
        output.WriteLine($"size: {size}, f64, median of up to {repeats} runs rotating {sets} input sets, at most {maxSeconds} s per case after the first run\n");
        var runner = new QuickRunner(repeats, sets, maxSeconds, peak.F64PeakGflops, output, floorSeconds: StateFloor.Seconds);
        if (options.Has("--backward"))
        {
            // The backward pass of each case (GFLOP/s against the forward's FLOPs), each row followed by its forward's.
            cases = [.. cases.SelectMany(c => new[] { c with { Backward = true }, c })];
        }
        results = runner.Run(cases, (c, inputs) => c.RunCpu(inputs));
        backendName = "cpu";
    }
    if (options.Get("--out") is { } md)
    {
        File.WriteAllText(md, log.ToString());
    }
    if (options.Get("--json") is { } json)
    {
        File.WriteAllText(json, QuickRunner.Json(results, backendName));
    }
    return 0;
}

/// <summary>The command line: flags, options with a value, and the rest (for BenchmarkDotNet).</summary>
internal sealed class Options
{
    private static readonly string[] s_flags = ["--peak", "--cpu", "--gpu", "--opencl", "--smoke", "--list", "--quick", "--backward"];
    private static readonly string[] s_valued =
        ["--size", "--family", "--form", "--variant", "--repeats", "--sets", "--max-seconds", "--device", "--precision", "--peak-gflops", "--out", "--json"];
    private readonly HashSet<string> _flags = [];
    private readonly Dictionary<string, string> _values = [];

    public string[] Rest { get; private set; } = [];

    public static Options Parse(string[] args)
    {
        var options = new Options();
        var rest = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            if (s_flags.Contains(args[i]))
            {
                options._flags.Add(args[i] == "--quick" ? "--cpu" : args[i]);
            }
            else if (s_valued.Contains(args[i]) && i + 1 < args.Length)
            {
                options._values[args[i]] = args[++i];
            }
            else
            {
                rest.Add(args[i]);
            }
        }
        options.Rest = [.. rest];
        return options;
    }

    public bool Has(string flag) => _flags.Contains(flag);
    public string? Get(string name) => _values.GetValueOrDefault(name);
    public int? GetInt(string name) => Get(name) is { } s ? int.Parse(s, CultureInfo.InvariantCulture) : null;
    public double? GetDouble(string name) => Get(name) is { } s ? double.Parse(s, CultureInfo.InvariantCulture) : null;
}

/// <summary>Writes to two writers (the console and the --out file).</summary>
internal sealed class TeeWriter(TextWriter first, TextWriter second) : TextWriter
{
    public override System.Text.Encoding Encoding => first.Encoding;
    public override void Write(char value) { first.Write(value); second.Write(value); }
    public override void Write(string? value) { first.Write(value); second.Write(value); }
    public override void WriteLine(string? value) { first.WriteLine(value); second.WriteLine(value); }
    public override void Flush() { first.Flush(); second.Flush(); }
}
