using AttentionReference.OpenCL;

namespace AttentionReference.Tests.OpenCL;

/// <summary>
/// The context's buffer pool and transfers: a disposed buffer's memory is reused by the next buffer of its size, so
/// every law here is about what a reused buffer must not leak (old values, a handle handed out twice).
/// </summary>
[Collection(OpenClSerial.Name)]
public sealed class DeviceBufferOpenClTests
{
    [Fact]
    public void A_disposed_buffer_is_reused_for_the_same_size_and_zeros_overwrite_what_it_held()
    {
        using var context = new OpenClContext(OpenClDevice.Select(null));
        double[] values = Enumerable.Range(1, 1000).Select(i => i * 0.5).ToArray();
        nint handle;
        using (DeviceBuffer first = context.Upload(values, Precision.F64))
        {
            handle = first.Handle;
            Assert.Equal(values, context.Download(first));
        }
        using DeviceBuffer zeros = context.Zeros(values.Length, Precision.F64);
        Assert.Equal(handle, zeros.Handle); // the same memory, still holding the values before the fill
        // +0.0 exactly, every bit zero (Equal(0.0, x) alone would pass -0.0 too).
        Assert.All(context.Download(zeros), x => Assert.Equal(0L, BitConverter.DoubleToInt64Bits(x)));
    }

    [Fact]
    public void A_buffer_disposed_twice_goes_back_to_the_pool_once()
    {
        using var context = new OpenClContext(OpenClDevice.Select(null));
        DeviceBuffer buffer = context.Allocate(64, Precision.F64);
        buffer.Dispose();
        buffer.Dispose();
        using DeviceBuffer a = context.Allocate(64, Precision.F64), b = context.Allocate(64, Precision.F64);
        Assert.NotEqual(a.Handle, b.Handle);
    }

    [Theory]
    [InlineData(Precision.F64)]
    [InlineData(Precision.F32)]
    public void Upload_then_download_returns_the_values_in_the_precision_over_several_conversion_chunks(Precision precision)
    {
        using var context = new OpenClContext(OpenClDevice.Select(null));
        // 2.5 M elements: the f32 path converts through a 1 M-element scratch, so this crosses two chunk boundaries.
        double[] values = Enumerable.Range(0, 5 << 19).Select(i => Math.Sin(i) * 1e3).ToArray();
        using DeviceBuffer buffer = context.Upload(values, precision);
        double[] expected = precision == Precision.F64 ? values : values.Select(x => (double)(float)x).ToArray();
        Assert.Equal(expected, context.Download(buffer));
    }

    [Fact]
    public void UploadOrZeros_uploads_the_values_when_given_and_zeros_of_the_length_when_not()
    {
        using var context = new OpenClContext(OpenClDevice.Select(null));
        using DeviceBuffer given = context.UploadOrZeros([1.5, -2], 7, Precision.F64), absent = context.UploadOrZeros(null, 3, Precision.F32);
        Assert.Equal([1.5, -2], context.Download(given));
        Assert.Equal([0.0, 0, 0], context.Download(absent));
    }
}
