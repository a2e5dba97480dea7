namespace AttentionReference.Bench;

/// <summary>
/// A problem size: batch B, sequence length T (queries = keys = T), heads H, key dim K, value dim V. Every form binds
/// its other symbols from these (see <see cref="InputFactory"/>).
/// </summary>
public sealed record BenchSize(string Name, int B, int T, int H, int K, int V)
{
    /// <summary>Smoke: tiny, so that every benchmark runs once in seconds.</summary>
    public static BenchSize Tiny { get; } = new("tiny", 1, 64, 2, 16, 16);

    /// <summary>The default CPU size.</summary>
    public static BenchSize Small { get; } = new("small", 1, 512, 4, 64, 64);

    /// <summary>One layer of a small model (slow on 2 cores: only on request).</summary>
    public static BenchSize Layer { get; } = new("layer", 1, 4096, 8, 128, 128);

    /// <summary>The GPU target size of the benchmark issue.</summary>
    public static BenchSize Gpu { get; } = new("gpu", 1, 8192, 32, 128, 128);

    /// <summary>All named sizes.</summary>
    public static IReadOnlyList<BenchSize> All { get; } = [Tiny, Small, Layer, Gpu];

    /// <summary>A named size, or "B,T,H,K,V" given as numbers.</summary>
    public static BenchSize Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (All.FirstOrDefault(s => s.Name == text) is { } named)
        {
            return named;
        }
        int[] n = text.Split(',').Select(x => int.Parse(x, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        return n.Length == 5
            ? new BenchSize(text, n[0], n[1], n[2], n[3], n[4])
            : throw new ArgumentException($"size must be one of {string.Join(", ", All.Select(s => s.Name))} or B,T,H,K,V; found '{text}'");
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Name} (B={B},T={T},H={H},K={K},V={V})";
}
