using System.Globalization;

namespace AttentionReference.Tensors;

/// <summary>
/// A dense row-major tensor of doubles. Every form reads and writes this type. <see cref="DType"/> records the type
/// the values came from (or will be written as): values read from a file convert exactly, so a tensor that came
/// from bf16 holds only bf16 values; the computation itself is always in double.
/// </summary>
public sealed class Tensor
{
    private readonly int[] _shape;

    /// <summary>Wraps <paramref name="data"/> (not copied) with the given shape.</summary>
    public Tensor(int[] shape, double[] data, DType dtype = DType.F64)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(data);
        long length = ElementCount(shape);
        if (length != data.Length)
        {
            throw new ArgumentException($"shape {FormatShape(shape)} holds {length} elements but {data.Length} were given", nameof(data));
        }
        _shape = (int[])shape.Clone();
        Data = data;
        DType = dtype;
    }

    /// <summary>A tensor of zeros.</summary>
    public static Tensor Zeros(params int[] shape) => new(shape, new double[checked((int)ElementCount(shape))]);

    /// <summary>A rank-0 tensor holding one value.</summary>
    public static Tensor Scalar(double value, DType dtype = DType.F64) => new([], [value], dtype);

    /// <summary>The extents, outermost first.</summary>
    public IReadOnlyList<int> Shape => _shape;

    /// <summary>The row-major values.</summary>
    public double[] Data { get; }

    /// <summary>The element type the values belong to.</summary>
    public DType DType { get; }

    /// <summary>Number of axes (0 for a scalar).</summary>
    public int Rank => _shape.Length;

    /// <summary>Number of elements.</summary>
    public int Length => Data.Length;

    /// <summary>Extent of one axis.</summary>
    public int Dim(int axis) => _shape[axis];

    /// <summary>A copy of the shape.</summary>
    public int[] ShapeArray() => (int[])_shape.Clone();

    /// <summary>Row-major element strides.</summary>
    public int[] Strides()
    {
        var strides = new int[_shape.Length];
        int stride = 1;
        for (int axis = _shape.Length - 1; axis >= 0; axis--)
        {
            strides[axis] = stride;
            stride *= _shape[axis];
        }
        return strides;
    }

    /// <summary>The element at a full index.</summary>
    public double this[params int[] index]
    {
        get => Data[Offset(index)];
        set => Data[Offset(index)] = value;
    }

    /// <summary>Row-major offset of a full index.</summary>
    public int Offset(params int[] index)
    {
        ArgumentNullException.ThrowIfNull(index);
        if (index.Length != _shape.Length)
        {
            throw new ArgumentException($"index of rank {index.Length} for a tensor of rank {_shape.Length}", nameof(index));
        }
        int offset = 0;
        for (int axis = 0; axis < _shape.Length; axis++)
        {
            if ((uint)index[axis] >= (uint)_shape[axis])
            {
                throw new ArgumentOutOfRangeException(nameof(index), $"index {index[axis]} out of range for axis {axis} of extent {_shape[axis]}");
            }
            offset = offset * _shape[axis] + index[axis];
        }
        return offset;
    }

    /// <summary>The full index of a row-major offset.</summary>
    public int[] IndexOf(int offset)
    {
        var index = new int[_shape.Length];
        for (int axis = _shape.Length - 1; axis >= 0; axis--)
        {
            index[axis] = offset % _shape[axis];
            offset /= _shape[axis];
        }
        return index;
    }

    /// <summary>The same values rounded to <paramref name="dtype"/> (round to nearest, ties to even).</summary>
    public Tensor RoundTo(DType dtype)
    {
        var data = new double[Data.Length];
        for (int i = 0; i < data.Length; i++)
        {
            data[i] = dtype.Round(Data[i]);
        }
        return new Tensor(_shape, data, dtype);
    }

    /// <summary>The same values (copied) with a new shape of equal element count.</summary>
    public Tensor Reshape(params int[] shape) => new(shape, (double[])Data.Clone(), DType);

    /// <summary>A deep copy.</summary>
    public Tensor Clone() => new(_shape, (double[])Data.Clone(), DType);

    /// <summary>"[2,16,4,8]".</summary>
    public string ShapeString => FormatShape(_shape);

    /// <inheritdoc/>
    public override string ToString() => $"{DType.ShortName()}{ShapeString}";

    /// <summary>Formats a shape as "[2,16,4,8]".</summary>
    public static string FormatShape(IEnumerable<int> shape) =>
        "[" + string.Join(",", shape.Select(d => d.ToString(CultureInfo.InvariantCulture))) + "]";

    /// <summary>Product of the extents; throws if one is negative or the product exceeds what an array holds.</summary>
    public static long ElementCount(IReadOnlyList<int> shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        long count = 1;
        foreach (int extent in shape)
        {
            if (extent < 0)
            {
                throw new ArgumentException($"negative extent in shape {FormatShape(shape)}", nameof(shape));
            }
            count *= extent;
            if (count > Array.MaxLength)
            {
                throw new ArgumentException($"shape {FormatShape(shape)} has more elements than one array holds", nameof(shape));
            }
        }
        return count;
    }
}
