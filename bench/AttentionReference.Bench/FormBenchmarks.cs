using System.Globalization;
using AttentionReference.Tensors;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace AttentionReference.Bench;

/// <summary>
/// BenchmarkDotNet: every form × variant of <see cref="Forms.FormCatalog"/> at one size on the CPU in f64. One class per size,
/// each a BenchmarkDotNet category ("tiny", "small", "layer"); the case is a parameter, so <c>--family</c>,
/// <c>--form</c> and <c>--variant</c> of Program pick cases by a filter.
/// </summary>
[MemoryDiagnoser]
public abstract class FormBenchmarks
{
    private IReadOnlyDictionary<string, Tensor> _inputs = new Dictionary<string, Tensor>();

    /// <summary>The size of this class's cases.</summary>
    protected abstract BenchSize Size { get; }

    /// <summary>The case being measured.</summary>
    [ParamsSource(nameof(Cases))]
    public BenchCase Case { get; set; } = null!;

    /// <summary>Every case at <see cref="Size"/> (the filter is applied by BenchmarkDotNet, so indices agree across processes).</summary>
    public IEnumerable<BenchCase> Cases() => BenchCase.All(Size);

    [GlobalSetup]
    public void Setup() => _inputs = Case.Inputs();

    [Benchmark]
    public object Run() => Case.RunCpu(_inputs);
}

/// <summary>B=1, T=64, H=2, K=V=16: the smoke run.</summary>
[BenchmarkCategory("tiny")]
public class TinyBenchmarks : FormBenchmarks
{
    protected override BenchSize Size => BenchSize.Tiny;
}

/// <summary>B=1, T=512, H=4, K=V=64.</summary>
[BenchmarkCategory("small")]
public class SmallBenchmarks : FormBenchmarks
{
    protected override BenchSize Size => BenchSize.Small;
}

/// <summary>B=1, T=4096, H=8, K=V=128 (minutes per case on 2 cores).</summary>
[BenchmarkCategory("layer")]
public class LayerBenchmarks : FormBenchmarks
{
    protected override BenchSize Size => BenchSize.Layer;
}

/// <summary>GFLOP/s (<see cref="FlopModel"/> over the mean time) or its share of the measured all-core f64 FMA rate.</summary>
public sealed class FlopColumn(bool percentOfPeak, double peakGflops) : IColumn
{
    public string Id => percentOfPeak ? "PercentOfPeak" : "GFlops";
    public string ColumnName => percentOfPeak ? "% of peak" : "GFLOP/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => percentOfPeak ? 1 : 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => percentOfPeak
        ? $"GFLOP/s as a share of the measured all-core f64 FMA rate ({peakGflops.ToString("F1", CultureInfo.InvariantCulture)} GFLOP/s)"
        : "FLOPs of the case's model (bench/README.md) over the mean time";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        ArgumentNullException.ThrowIfNull(summary);
        ArgumentNullException.ThrowIfNull(benchmarkCase);
        double? meanNs = summary[benchmarkCase]?.ResultStatistics?.Mean;
        if (meanNs is not { } ns || benchmarkCase.Parameters["Case"] is not BenchCase c)
        {
            return "—";
        }
        double gflops = c.Flops / ns; // FLOP per ns = GFLOP/s
        return QuickRunner.Num(percentOfPeak ? 100 * gflops / peakGflops : gflops);
    }

    public bool IsAvailable(Summary summary) => true;
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
}
