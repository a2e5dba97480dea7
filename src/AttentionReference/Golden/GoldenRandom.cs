namespace AttentionReference.Golden;

/// <summary>
/// The random numbers behind golden inputs: SplitMix64, written out here so that the same case gives the same inputs
/// on every machine and every .NET version (System.Random's sequence is not promised to stay the same).
/// </summary>
public sealed class GoldenRandom(ulong seed)
{
    private ulong _state = seed;

    /// <summary>A generator seeded from a case's name (FNV-1a of its UTF-16 code units).</summary>
    public static GoldenRandom For(string caseId)
    {
        ArgumentNullException.ThrowIfNull(caseId);
        ulong hash = 14695981039346656037UL;
        foreach (char c in caseId)
        {
            hash = (hash ^ c) * 1099511628211UL;
        }
        return new GoldenRandom(hash);
    }

    /// <summary>The next 64 random bits (SplitMix64, Steele et al. 2014).</summary>
    public ulong NextBits()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextUniform() => (NextBits() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Standard normal (Box–Muller; 1 − u keeps the logarithm finite).</summary>
    public double NextNormal() => Math.Sqrt(-2 * Math.Log(1 - NextUniform())) * Math.Cos(2 * Math.PI * NextUniform());

    /// <summary>A tensor of normal values times <paramref name="scale"/>.</summary>
    public Tensors.Tensor Normal(double scale, params int[] shape)
    {
        var data = new double[Tensors.Tensor.ElementCount(shape)];
        for (int i = 0; i < data.Length; i++)
        {
            data[i] = scale * NextNormal();
        }
        return new Tensors.Tensor(shape, data);
    }
}
