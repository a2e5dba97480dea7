using AttentionReference.Forms;

namespace AttentionReference.Bench;

/// <summary>
/// The floating-point operations each case is credited with (an FMA counts 2; exp, division and comparisons count 0),
/// so that GFLOP/s and % of peak compare a run against the machine's FMA rate. The models count the matrix work of the
/// algorithm the variant runs (bench/README.md lists them); a form the model does not know gets NaN (shown as "—").
/// </summary>
/// <remarks>
/// P = T(T+1)/2 query–key pairs under a causal mask (Tq = Tk = T); C = chunk size.
/// softmax naive/tiled/split, forgetting: 2·B·H·P·(K+V); decode (one query over T keys): 2·B·H·T·(K+V).
/// sparse: 2·B·H·(kept pairs)·(K+V) with the pairs counted from the pattern the bench generates.
/// mla naive: 2·B·T·H·Dc·(Dn+Dv) (up-projections) + 2·B·H·P·(Dn+Dr+Dv);
/// mla absorbed: 2·B·T·H·Dc·(Dn+Dv) (absorbing W_UK into q and W_UV out of o) + 2·B·H·P·(2·Dc+Dr).
/// Linear and gated linear, recurrent: r·B·H·T·K·V, r = 4 (S += k vᵀ, o = Sᵀq), 5 with a per-key decay (gla, hgrn2, rwkv6);
/// parallel: 2·B·H·P·(K+V); chunked: B·H·T·(C·(K+V) + 4·K·V).
/// Delta rule, recurrent: r·B·H·T·K·V, r = 6 (Sᵀk, rank-1 update, output), 7 with a decay (gated_delta_rule, kda),
/// 9 for rwkv7 (S a, the rank-1 a bᵀ term, v kᵀ, decay, output); chunked (WY/UT):
/// B·H·T·(C·(3K+2V) + C²/3 + 6·K·V); parallel (one T×T solve): B·H·(2·T²·(K+V) + 6·T·K·V).
/// State space (symbols as InputFactory binds them; a complex multiply-add counts 8): s4d (Hc = H·V channels,
/// N = K/2 modes), recurrent 12·B·Hc·T·N (x = Āx + B̄u, 2·Re(C x)), convolution 8·Hc·T·N (the kernel) + 2·B·Hc·P,
/// fft 8·Hc·T·N + 3·B·Hc·5·F·log₂F with F = 2T (three complex FFTs, 5 n log n each); h3 (d = K/8, N = M = K/2):
/// recurrent B·H·T·(12·d²·N + 2·d·M + 2·d²), convolution B·H·(2·P·d² + 2·T·d·M) + 8·H·T·N; mamba (D = H·V,
/// N = 16): recurrent 6·B·D·T·N, scan 10·B·D·T·N (the block scan and its fix-up besides Δ·B·u and C·x); ssd (P = V,
/// N = K) as the linear family with K → N, V → P: recurrent 5·B·H·T·P·N, quadratic 2·B·H·P_pairs·(N+P), chunked
/// B·H·T·(C·(N+P) + 4·N·P).
/// Hybrid: power (D = C(K+p−1, p) symmetric-power features) quadratic 2·B·H·P·(K+V) + 2·B·H·T·D·V (its final state),
/// recurrent 4·B·H·T·D·V,
/// chunked B·H·T·(C·(K+V) + 4·D·V); based (F = 1+K+K², window w) recurrent 4·B·H·T·F·V + 2·B·H·T·w·(K+V),
/// parallel 2·B·H·P·(K+V) + 2·B·H·T·w·(K+V), chunked B·H·T·(C·(K+V) + 4·F·V) + 2·B·H·T·w·(K+V); nats_l with half
/// the chunks routed each way: half of gated_delta_rule's recurrent or chunked count plus half of causal softmax's.
/// </remarks>
public static class FlopModel
{
    /// <summary>The FLOPs of <paramref name="form"/>'s <paramref name="variant"/> at <paramref name="size"/>.</summary>
    public static double Flops(IForm form, string variant, BenchSize size, FormParameters parameters)
    {
        ArgumentNullException.ThrowIfNull(form);
        ArgumentNullException.ThrowIfNull(size);
        ArgumentNullException.ThrowIfNull(parameters);
        double b = size.B, t = size.T, h = size.H, k = size.K, v = size.V;
        double pairs = t * (t + 1) / 2;
        double bh = b * h;
        double c = parameters.GetInt("chunk_size", DefaultChunk(form));
        double dn = k, dr = Math.Max(1, size.K / 2), dc = 4 * k, dv = v;
        return (form.Name, variant) switch
        {
            ("softmax", "decode") => 2 * bh * t * (k + v),
            ("softmax", _) or ("forgetting", _) => 2 * bh * pairs * (k + v),
            ("sparse", _) => 2 * bh * SparsePairs(variant, size) * (k + v),
            ("mla", "naive") => 2 * b * t * h * dc * (dn + dv) + 2 * bh * pairs * (dn + dr + dv),
            ("mla", "absorbed") => 2 * b * t * h * dc * (dn + dv) + 2 * bh * pairs * (2 * dc + dr),
            ("delta_rule", "parallel") => bh * (2 * t * t * (k + v) + 6 * t * k * v),
            ("s4d", _) or ("h3", _) or ("mamba", _) or ("ssd", _) => StateSpace(form.Name, variant, size, c),
            ("power", _) or ("based", _) or ("nats_l", _) => Hybrid(form.Name, variant, size, c, parameters),
            (_, "recurrent") when RecurrentRate(form) is { } r => r * bh * t * k * v,
            (_, "parallel") when form.Family is "linear" or "gated linear" => 2 * bh * pairs * (k + v),
            (_, "chunked") when form.Family is "linear" or "gated linear" => bh * t * (c * (k + v) + 4 * k * v),
            (_, "chunked") when form.Family == "delta rule" => bh * t * (c * (3 * k + 2 * v) + c * c / 3 + 6 * k * v),
            _ => double.NaN,
        };
    }

    private static double StateSpace(string form, string variant, BenchSize size, double c)
    {
        double b = size.B, t = size.T, h = size.H, pairs = t * (t + 1) / 2;
        double n = Math.Max(1, size.K / 2), channels = size.H * (double)size.V, d = Math.Max(1, size.K / 8);
        return (form, variant) switch
        {
            ("s4d", "recurrent") => 12 * b * channels * t * n,
            ("s4d", "convolution") => 8 * channels * t * n + 2 * b * channels * pairs,
            ("s4d", "fft") => 8 * channels * t * n + 3 * b * channels * 5 * (2 * t) * Math.Log2(2 * t),
            ("h3", "recurrent") => b * h * t * (12 * d * d * n + 2 * d * n + 2 * d * d),
            ("h3", "convolution") => b * h * (2 * pairs * d * d + 2 * t * d * n) + 8 * h * t * n,
            ("mamba", "recurrent") => 6 * b * channels * t * 16,
            ("mamba", "scan") => 10 * b * channels * t * 16,
            ("ssd", "recurrent") => 5 * b * h * t * size.V * size.K,
            ("ssd", "quadratic") => 2 * b * h * pairs * (size.K + size.V),
            ("ssd", "chunked") => b * h * t * (c * (size.K + size.V) + 4.0 * size.K * size.V),
            _ => double.NaN,
        };
    }

    private static double Hybrid(string form, string variant, BenchSize size, double c, FormParameters parameters)
    {
        double b = size.B, t = size.T, h = size.H, k = size.K, v = size.V, bh = b * h, pairs = t * (t + 1) / 2;
        int p = parameters.GetInt("deg", 2);
        double powerFeatures = Binomial(size.K + p - 1, p), taylorFeatures = 1 + k + k * k;
        double window = 2 * bh * t * Math.Min(parameters.GetInt("window", 64), size.T) * (k + v);
        return (form, variant) switch
        {
            ("power", "quadratic") => 2 * bh * pairs * (k + v) + 2 * bh * t * powerFeatures * v,
            ("power", "recurrent") => 4 * bh * t * powerFeatures * v,
            ("power", "chunked") => bh * t * (c * (k + v) + 4 * powerFeatures * v),
            ("based", "recurrent") => 4 * bh * t * taylorFeatures * v + window,
            ("based", "parallel") => 2 * bh * pairs * (k + v) + window,
            ("based", "chunked") => bh * t * (c * (k + v) + 4 * taylorFeatures * v) + window,
            ("nats_l", "recurrent") => (7 * bh * t * k * v + 2 * bh * pairs * (k + v)) / 2,
            ("nats_l", "chunked") => (bh * t * (c * (3 * k + 2 * v) + c * c / 3 + 6 * k * v) + 2 * bh * pairs * (k + v)) / 2,
            _ => double.NaN,
        };
    }

    /// <summary>n choose r, as a double.</summary>
    internal static double Binomial(int n, int r)
    {
        double result = 1;
        for (int i = 1; i <= r; i++)
        {
            result = result * (n - r + i) / i;
        }
        return result;
    }

    private static int DefaultChunk(IForm form) =>
        int.TryParse(form.Parameters.FirstOrDefault(p => p.Name == "chunk_size")?.Default, out int c) ? c : 64;

    private static double? RecurrentRate(IForm form) => form.Name switch
    {
        "linear" or "retention" or "simple_gla" or "mlstm" => 4,
        "gla" or "hgrn2" or "rwkv6" => 5,
        "delta_rule" => 6,
        "gated_delta_rule" or "kda" => 7,
        "rwkv7" => 9,
        _ => null,
    };

    /// <summary>
    /// Query–key pairs per head of the bench's sparse patterns (no causal mask): longformer, keys within
    /// window = 256 of the query; block, the kept blocks of the generated mask (about a quarter plus the diagonal:
    /// counted as (Nq + (Nq·Nk − Nq)/4) blocks of 64²); bigbird, the 3-block band, the first (global) block row and
    /// column, and about a quarter of the rest.
    /// </summary>
    private static double SparsePairs(string variant, BenchSize size)
    {
        int t = size.T;
        double n = Math.Ceiling(t / (double)InputFactory.Block);
        double blockPairs = Math.Min(InputFactory.Block, t) * (double)Math.Min(InputFactory.Block, t);
        switch (variant)
        {
            case "longformer":
                const int w = 256;
                double pairs = 0;
                for (int i = 0; i < t; i++)
                {
                    pairs += Math.Min(i + w, t - 1) - Math.Max(i - w, 0) + 1;
                }
                return pairs;
            case "block":
                return (n + (n * n - n) / 4) * blockPairs;
            case "bigbird":
                // Band 3n − 2 blocks, first row and column 2n − 1, three blocks in both.
                double kept = n == 1 ? 1 : Math.Min(n * n, 5 * n - 6);
                return (kept + (n * n - kept) / 4) * blockPairs;
            default:
                return double.NaN;
        }
    }
}
