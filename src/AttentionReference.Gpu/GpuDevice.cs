using System.Collections.Concurrent;
using System.Globalization;
using System.Reflection;
using AttentionReference.Tensors;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace AttentionReference.Gpu;

/// <summary>
/// One ILGPU accelerator and everything the hosts need of it, written once: choosing the device, its description, its
/// limits, loading and launching kernels, and device buffers for one run (<see cref="DeviceBuffers"/>).
/// </summary>
public sealed class GpuDevice : IDisposable
{
    /// <summary>The environment variable that names a device when no name is passed ("cuda", "cpu", "H100", ...).</summary>
    public const string EnvironmentVariable = "REF_GPU_DEVICE";

    /// <summary>Threads per group of the kernels that work in groups, where the accelerator allows that many.</summary>
    private const int PreferredGroupSize = 128;

    private readonly Context _context;
    private readonly ConcurrentDictionary<MethodInfo, Delegate> _kernels = new();
    private readonly System.Diagnostics.Stopwatch _kernelClock = new();

    /// <summary>
    /// Whether each launch is timed (the device is synchronised before and after it, so <see cref="KernelSeconds"/>
    /// holds the kernels' own time, no uploads or downloads): for the bench, off otherwise.
    /// </summary>
    public bool TimeKernels { get; set; }

    /// <summary>The seconds the timed launches took since the device opened (see <see cref="TimeKernels"/>).</summary>
    public double KernelSeconds => _kernelClock.Elapsed.TotalSeconds;

    private GpuDevice(Context context, Accelerator accelerator)
    {
        (_context, Accelerator) = (context, accelerator);
    }

    /// <summary>The accelerator the kernels run on.</summary>
    internal Accelerator Accelerator { get; }

    /// <summary>Whether the device is a CUDA GPU (else ILGPU's CPU accelerator).</summary>
    public bool IsCuda => Accelerator.AcceleratorType == AcceleratorType.Cuda;

    /// <summary>"NVIDIA H100 80GB HBM3 (CUDA SM_90, 79.1 GiB)" or "CPU accelerator (ILGPU, 16 threads per group)".</summary>
    public string Description => Describe(Accelerator.Device);

    /// <summary>
    /// The threads of one group for the kernels that work in groups: <see cref="PreferredGroupSize"/>, or fewer where
    /// the accelerator's limit is lower (16 on ILGPU's CPU accelerator).
    /// </summary>
    public int GroupSize => Math.Min(PreferredGroupSize, Accelerator.MaxNumThreadsPerGroup);

    /// <summary>
    /// The device named by <paramref name="name"/> (a case-insensitive substring of its name or kind, "cuda" or "cpu"),
    /// else by <see cref="EnvironmentVariable"/>, else the first CUDA device, else ILGPU's CPU accelerator. A name that
    /// matches no device, or a device that cannot be started, is bad input with one line.
    /// </summary>
    public static GpuDevice Open(string? name = null)
    {
        name = string.IsNullOrWhiteSpace(name) ? Environment.GetEnvironmentVariable(EnvironmentVariable) : name;
        Context context;
        try
        {
            context = Context.Create(builder => GpuMath.UseOnCuda(builder.Cuda().CPU(CPUDeviceKind.Default).EnableAlgorithms()));
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new InputException($"--backend gpu: ILGPU could not start: {e.Message}", e);
        }
        try
        {
            Device device = Choose(context, name);
            return new GpuDevice(context, device.CreateAccelerator(context));
        }
        catch (Exception e) when (e is not InputException and not OutOfMemoryException)
        {
            context.Dispose();
            throw new InputException($"--backend gpu: the device could not be started: {e.Message}", e);
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    /// <summary>Every device ILGPU finds here, described (CUDA devices first), without starting any.</summary>
    public static IReadOnlyList<string> Devices()
    {
        using Context context = Context.Create(builder => builder.Cuda().CPU(CPUDeviceKind.Default));
        return context.Devices.OrderBy(d => d.AcceleratorType == AcceleratorType.Cuda ? 0 : 1).Select(Describe).ToList();
    }

    /// <summary>Whether ILGPU finds a CUDA device here (an NVIDIA driver and GPU).</summary>
    public static bool HasCuda()
    {
        using Context context = Context.Create(builder => builder.Cuda());
        return context.GetCudaDevices().Count > 0;
    }

    /// <summary>The first CUDA device, else the CPU accelerator; with a name, the first device whose name or kind contains it.</summary>
    private static Device Choose(Context context, string? name)
    {
        var devices = context.Devices.OrderBy(d => d.AcceleratorType == AcceleratorType.Cuda ? 0 : 1).ToList();
        if (string.IsNullOrWhiteSpace(name))
        {
            return devices[0]; // the CPU accelerator is always there
        }
        return devices.FirstOrDefault(d => $"{d.Name} {d.AcceleratorType}".Contains(name.Trim(), StringComparison.OrdinalIgnoreCase))
            ?? throw new InputException($"--device '{name}': no ILGPU device matches; devices here: {string.Join("; ", devices.Select(Describe))}");
    }

    private static string Describe(Device device) => device switch
    {
        CudaDevice cuda => string.Create(CultureInfo.InvariantCulture,
            $"{cuda.Name} (CUDA {cuda.Architecture}, {cuda.MemorySize / (double)(1L << 30):0.0} GiB)"),
        _ => string.Create(CultureInfo.InvariantCulture,
            $"CPU accelerator (ILGPU, {device.MaxNumThreadsPerGroup} threads per group, host memory)"),
    };

    /// <summary>Buffers for one run, freed together when the run ends.</summary>
    internal DeviceBuffers Buffers() => new(Accelerator);

    /// <summary>Runs <paramref name="kernel"/> on <paramref name="items"/> threads (ILGPU picks the group size for this accelerator).</summary>
    internal void Launch<TArgs>(Action<Index1D, TArgs> kernel, long items, TArgs args) where TArgs : struct
    {
        if (items == 0)
        {
            return;
        }
        var launch = (Action<Index1D, TArgs>)_kernels.GetOrAdd(kernel.Method, _ => Accelerator.LoadAutoGroupedStreamKernel(kernel));
        Timed(() => launch(Extent(items, "threads"), args));
    }

    /// <summary>
    /// Runs <paramref name="kernel"/> in <paramref name="groups"/> groups of <see cref="GroupSize"/> threads, each group
    /// with <paramref name="sharedElements"/> elements of <typeparamref name="TShared"/> of shared memory; a device with
    /// less shared memory per group than that cannot run the kernel (bad input, one line).
    /// </summary>
    internal void LaunchGroups<TArgs, TShared>(Action<TArgs> kernel, long groups, int sharedElements, TArgs args)
        where TArgs : struct where TShared : unmanaged
    {
        if (groups == 0)
        {
            return;
        }
        long bytes = (long)sharedElements * System.Runtime.CompilerServices.Unsafe.SizeOf<TShared>();
        if (bytes > Accelerator.MaxSharedMemoryPerGroup)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"--backend gpu: {kernel.Method.Name} needs {bytes} bytes of shared memory per group; {Description} has {Accelerator.MaxSharedMemoryPerGroup}"));
        }
        var launch = (Action<KernelConfig, TArgs>)_kernels.GetOrAdd(kernel.Method, _ => Accelerator.LoadStreamKernel(kernel));
        Timed(() => launch(new KernelConfig(Extent(groups, "groups"), GroupSize, SharedMemoryConfig.RequestDynamic<TShared>(sharedElements)), args));
    }

    /// <summary>Runs a launch, timing it to its end when <see cref="TimeKernels"/> is on.</summary>
    private void Timed(Action launch)
    {
        if (!TimeKernels)
        {
            launch();
            return;
        }
        Accelerator.Synchronize();
        _kernelClock.Start();
        launch();
        Accelerator.Synchronize();
        _kernelClock.Stop();
    }

    /// <summary>Waits until every launched kernel has finished.</summary>
    internal void Synchronize() => Accelerator.Synchronize();

    private static int Extent(long count, string what) => count <= int.MaxValue
        ? (int)count
        : throw new InputException(string.Create(CultureInfo.InvariantCulture,
            $"--backend gpu: the problem needs {count} {what} in one launch, more than one launch holds; split the batch"));

    /// <inheritdoc/>
    public void Dispose()
    {
        Accelerator.Dispose();
        _context.Dispose();
    }
}
