namespace AttentionReference.IO;

/// <summary>
/// How much the readers read, at most. A hostile or corrupt file cannot make them allocate, inflate or recurse beyond
/// these bounds: whatever lies past them is refused with a one-line <see cref="Tensors.InputException"/> before it is
/// read. With these limits, reading a file of N bytes allocates at most about 20 × (N + I) bytes plus a small
/// constant, where I (the bytes inflated from .npz members, never more than <see cref="MaxInflatedBytes"/>) is zero for
/// safetensors and .npy: the file, or the tensors read from it, once as bytes and once as doubles (8 bytes for each
/// element of 1 to 8 bytes), and once more for a Fortran-order .npy reordered to row-major.
/// </summary>
public sealed record ReadLimits
{
    /// <summary>
    /// The largest input file read: 2 GB (2,000,000,000 bytes), just under .NET's largest byte array (2,147,483,591
    /// bytes), which an .npy file or an .npz member is read into. A larger file is refused before it is opened.
    /// </summary>
    public const long LargestFile = 2_000_000_000;

    /// <summary>
    /// The largest .npz member, uncompressed: 2 GB, for the same reason. The size a member's zip entry declares is
    /// checked against this before anything is inflated, and inflating stops at the declared size.
    /// </summary>
    public const long LargestMember = 2_000_000_000;

    /// <summary>The most bytes inflated from the members of one .npz archive, all members together: 2 GB.</summary>
    public const long MostInflated = 2_000_000_000;

    /// <summary>
    /// How far deflate can expand data: 1032 to 1 (258 bytes from a 2-bit code, zlib's figure). A member whose zip
    /// entry declares more uncompressed bytes than this many times its compressed bytes (plus
    /// <see cref="DeflateSlackBytes"/>) lies about its size and is refused unread.
    /// </summary>
    public const int DeflateMaxRatio = 1032;

    /// <summary>Allowance on <see cref="DeflateMaxRatio"/> for the smallest members, whose few bytes of block headers dominate.</summary>
    public const int DeflateSlackBytes = 1024;

    /// <summary>
    /// The deepest nesting of brackets an .npy header may hold. NumPy writes depth 2 (a dict holding the shape tuple);
    /// deeper headers are refused, so that no header can exhaust the stack of the recursive parser.
    /// </summary>
    public const int NpyHeaderMaxDepth = 16;

    /// <summary>The limits the readers use unless told otherwise.</summary>
    public static ReadLimits Default { get; } = new();

    /// <summary>The largest input file read (default <see cref="LargestFile"/>).</summary>
    public long MaxFileBytes { get; init; } = LargestFile;

    /// <summary>The largest .npz member, uncompressed (default <see cref="LargestMember"/>).</summary>
    public long MaxMemberBytes { get; init; } = LargestMember;

    /// <summary>The most bytes inflated from one .npz archive (default <see cref="MostInflated"/>).</summary>
    public long MaxInflatedBytes { get; init; } = MostInflated;
}
