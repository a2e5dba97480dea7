using AttentionReference.Forms;
using AttentionReference.Golden;
using AttentionReference.Tensors;

namespace AttentionReference.Bench;

/// <summary>
/// Makes a form's inputs from its <see cref="TensorSpec"/>s: every symbol of a shape is bound from the size, and each
/// tensor's values are drawn to suit its name (gates are log-space and ≤ 0). Optional tensors are left out except where
/// a variant needs them (the table in <see cref="OptionalInputs"/>). The numbers come from <see cref="GoldenRandom"/>
/// seeded by the case, so every machine times the same inputs.
/// </summary>
/// <remarks>
/// Symbols: B, N and Blocks = B (softmax decode's cache is unpaged); T, Tq, Tk, Sk, Tcache = T (Tq = 1 for softmax
/// decode); H, Hq, Hkv, HV = H (no GQA);
/// K, F, Dn, M = K; V, Dv = V; Dr = K/2, Dc = 4K (DeepSeek-V3's 64 and 512 at K = 128); Dnv = K + V;
/// Nq, Nk = ⌈T / 64⌉ (the default block size); G = 64 (the first block is global); NC = ⌈T / 64⌉ (nats_l's chunks).
/// State-space forms (symbols of their own, see <see cref="StateSpaceSymbol"/>): s4d channels H = H·V (a model width)
/// with N = K/2 (S4D's 64 at K = 128); h3 heads H with head dim d = K/8 and N = M = K/2 (state and shift sizes);
/// mamba D = H·V channels (d_inner), N = 16 (mamba's d_state), L = T; ssd P = V, N = K, G = 1.
/// Values: q, k, v and the rest N(0, 1); gates g, gk, gv, w = log σ(N(0, 1)) ∈ (−∞, 0); beta = σ(N(0, 1));
/// mLSTM i = N(0, 1), f = N(3, 1) (a pre-activation: forget gates near 1); delta-rule keys L2-normalised rows
/// (so I − β k kᵀ is a contraction); RWKV-7 a = −κ̂, b = κ̂ ⊙ σ(N) with κ̂ L2-normalised rows (as RWKV-7's layer);
/// MLA up-projections N(0, 1/Dc); block masks keep the diagonal block and about a quarter of the others.
/// State space, as their papers initialise them: log_dt = log U(0.001, 0.1); s4d/h3 A_real = −1/2, A_imag = π·n
/// (S4D-Lin); mamba A_dn = −(n + 1) (S4D-Real, mamba's A_log = log(1..N)) and delta U(0.001, 0.1) (mamba's dt range,
/// no softplus); ssd A_h = −U(1, 16) (Mamba-2's A_init_range) and dt U(0.001, 0.1). nats_l: keys L2-normalised (its
/// Gated DeltaNet branch), each chunk routed to softmax or to the state with probability ½.
/// </remarks>
public static class InputFactory
{
    /// <summary>The block size of block masks (the forms' default block_q = block_k).</summary>
    public const int Block = 64;

    /// <summary>The parameters a case runs with: causal attention wherever the form has the choice (sparse: the pattern alone).</summary>
    public static FormParameters Parameters(IForm form, string variant)
    {
        ArgumentNullException.ThrowIfNull(form);
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        if (form.Name != "sparse" && form.Parameters.Any(p => p.Name == "causal"))
        {
            values["causal"] = "true";
        }
        return new FormParameters(values);
    }

    /// <summary>The optional inputs a variant needs (the rest are left out); required ones a variant does not use are dropped.</summary>
    public static (string[] Include, string[] Exclude) OptionalInputs(string form, string variant) => (form, variant) switch
    {
        ("softmax", "decode") => (["k_cache", "v_cache", "cache_seqlens"], ["k", "v"]),
        ("softmax", _) => (["k", "v"], []),
        ("sparse", "block") => (["block_mask"], []),
        ("sparse", "bigbird") => (["block_mask", "global_tokens"], []),
        ("mla", _) => (["w_uk", "w_uv"], []),
        ("s4d" or "h3", _) => (["A_imag", "C_imag", "D"], []),
        _ => ([], []),
    };

    /// <summary>The value of shape symbol <paramref name="symbol"/> for <paramref name="c"/>.</summary>
    public static int Symbol(BenchCase c, string symbol)
    {
        ArgumentNullException.ThrowIfNull(c);
        BenchSize s = c.Size;
        if (StateSpaceSymbol(c.Form.Name, symbol, s) is { } own)
        {
            return own;
        }
        return symbol switch
        {
            "B" or "N" or "Blocks" => s.B,
            "Tq" when c.Form.Name == "softmax" && c.Variant == "decode" => 1,
            "T" or "Tq" or "Tk" or "Sk" or "Tcache" => s.T,
            "H" or "Hq" or "Hkv" or "HV" => s.H,
            "K" or "F" or "Dn" or "M" => s.K,
            "V" or "Dv" => s.V,
            "Dr" => Math.Max(1, s.K / 2),
            "Dc" => 4 * s.K,
            "Dnv" => s.K + s.V,
            "Nq" or "Nk" => (s.T + Block - 1) / Block,
            "G" => Math.Min(Block, s.T),
            "NC" => (s.T + 63) / 64,
            _ => throw new InputException($"the bench has no value for shape symbol {symbol} of {c.Form.Name}; add it to InputFactory.Symbol"),
        };
    }

    /// <summary>The state-space forms' own symbols (null: the general table applies).</summary>
    private static int? StateSpaceSymbol(string form, string symbol, BenchSize s) => (form, symbol) switch
    {
        ("s4d", "H") => s.H * s.V,
        ("s4d" or "h3", "N") => Math.Max(1, s.K / 2),
        ("h3", "d") => Math.Max(1, s.K / 8),
        ("h3", "M") => Math.Max(1, s.K / 2),
        ("mamba", "D") => s.H * s.V,
        ("mamba", "N") => 16,
        ("mamba", "L") => s.T,
        ("mamba", "S") => s.B,
        ("ssd", "P") => s.V,
        ("ssd", "N") => s.K,
        ("ssd", "G") => 1,
        ("ssd", "S") => s.B,
        _ => null,
    };

    /// <summary>Input set <paramref name="inputSet"/> of <paramref name="c"/>.</summary>
    public static IReadOnlyDictionary<string, Tensor> Make(BenchCase c, int inputSet)
    {
        ArgumentNullException.ThrowIfNull(c);
        var random = GoldenRandom.For($"bench/{c.Id}/{c.Size.Name}/{inputSet}");
        var (include, exclude) = OptionalInputs(c.Form.Name, c.Variant);
        var inputs = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (TensorSpec spec in c.Form.Inputs)
        {
            bool wanted = spec.Optional ? include.Contains(spec.Name) : !exclude.Contains(spec.Name);
            if (wanted)
            {
                int[] shape = spec.Alternatives[0].Select(sym => Symbol(c, sym)).ToArray();
                inputs[spec.Name] = Values(c, spec.Name, shape, random);
            }
        }
        if (c.Form.Name == "rwkv7" && inputs.TryGetValue("a", out Tensor? a) && inputs.ContainsKey("b"))
        {
            // RWKV-7's layer: a = −κ̂, b = κ̂ ⊙ (in-context learning rate), κ̂ = normalised keys.
            Tensor kappa = Rows(random.Normal(1, a.ShapeArray()), normalise: true);
            Tensor rate = Map(random.Normal(1, kappa.ShapeArray()), Sigmoid);
            inputs["a"] = Map(kappa, x => -x);
            inputs["b"] = new Tensor(kappa.ShapeArray(), kappa.Data.Zip(rate.Data, (x, y) => x * y).ToArray());
        }
        return inputs;
    }

    private static Tensor Values(BenchCase c, string name, int[] shape, GoldenRandom random)
    {
        switch (name)
        {
            case "g" or "gk" or "gv" or "w":
                return Map(random.Normal(1, shape), LogSigmoid);
            case "beta":
                return Map(random.Normal(1, shape), Sigmoid);
            case "f" when c.Form.Name == "mlstm":
                return Map(random.Normal(1, shape), x => x + 3);
            case "k" when c.Form.Family == "delta rule" || c.Form.Name == "nats_l":
                return Rows(random.Normal(1, shape), normalise: true);
            case "route":
                return Map(random.Normal(1, shape), x => x > 0 ? 1 : 0);
            case "log_dt":
                return Map(random.Normal(1, shape), _ => Math.Log(0.001) + random.NextUniform() * (Math.Log(0.1) - Math.Log(0.001)));
            case "delta" or "dt":
                return Map(random.Normal(1, shape), _ => 0.001 + random.NextUniform() * (0.1 - 0.001));
            case "A_real":
                return Map(random.Normal(1, shape), _ => -0.5);
            case "A_imag":
                return new Tensor(shape, Enumerable.Range(0, (int)Tensor.ElementCount(shape)).Select(i => Math.PI * (i % shape[^1])).ToArray());
            case "A" when c.Form.Name == "mamba":
                return new Tensor(shape, Enumerable.Range(0, (int)Tensor.ElementCount(shape)).Select(i => -(double)(i % shape[^1] + 1)).ToArray());
            case "A" when c.Form.Name == "ssd":
                return Map(random.Normal(1, shape), _ => -(1 + 15 * random.NextUniform()));
            case "w_uk" or "w_uv" or "wkv_b":
                return random.Normal(1 / Math.Sqrt(shape[^1]), shape);
            case "cache_seqlens":
                return new Tensor(shape, Enumerable.Repeat((double)c.Size.T, shape[0]).ToArray(), DType.I64);
            case "global_tokens":
                return new Tensor(shape, Enumerable.Range(0, shape[0]).Select(i => (double)i).ToArray(), DType.I64);
            case "block_mask":
                return BlockMask(shape, random);
            default:
                return random.Normal(1, shape);
        }
    }

    /// <summary>[Hq, Nq, Nk] of 0/1: the diagonal block and about a quarter of the others.</summary>
    private static Tensor BlockMask(int[] shape, GoldenRandom random)
    {
        var cells = new double[Tensor.ElementCount(shape)];
        int nq = shape[1], nk = shape[2];
        for (int n = 0; n < cells.Length; n++)
        {
            int i = n / nk % nq, j = n % nk;
            cells[n] = i == j || random.NextUniform() < 0.25 ? 1 : 0;
        }
        return new Tensor(shape, cells, DType.I32);
    }

    private static Tensor Rows(Tensor t, bool normalise)
    {
        if (normalise)
        {
            int d = t.Dim(t.Rank - 1);
            for (int row = 0; row < t.Length / d; row++)
            {
                Span<double> x = t.Data.AsSpan(row * d, d);
                double norm = Math.Sqrt(System.Numerics.Tensors.TensorPrimitives.SumOfSquares<double>(x));
                System.Numerics.Tensors.TensorPrimitives.Divide(x, norm, x);
            }
        }
        return t;
    }

    private static Tensor Map(Tensor t, Func<double, double> f)
    {
        for (int i = 0; i < t.Length; i++)
        {
            t.Data[i] = f(t.Data[i]);
        }
        return t;
    }

    private static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));

    private static double LogSigmoid(double x) => x >= 0 ? -Math.Log(1 + Math.Exp(-x)) : x - Math.Log(1 + Math.Exp(x));
}
