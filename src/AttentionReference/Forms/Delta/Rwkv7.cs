using System.Globalization;
using AttentionReference.Forms.Common;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Delta;

/// <summary>
/// RWKV-7 "Goose" attention as fla's generalised delta rule with a diagonal-plus-low-rank transition (DPLR), exact, in
/// double.
/// <code>
/// Shapes (layout [B,T,H,D]; names of fla's chunk_dplr_delta_rule, with chunk_rwkv7's as aliases):
///   q [B,T,H,K] (alias r)  k [B,T,H,K]  v [B,T,H,V]  a [B,T,H,K]  b [B,T,H,K]  gk [B,T,H,K] (aliases w, log_w)
///   initial_state [N,H,K,V]   →   o [B,T,H,V]  final_state [N,H,K,V]
///
/// Per sequence and head, S is K x V, S_0 = initial_state (zeros if absent), gk_t ∈ R^K the log decay:
///   S_t = (Diag(exp(gk_t)) + b_t a_tᵀ) S_{t−1} + k_t v_tᵀ
///       = Diag(exp(gk_t)) S_{t−1} + b_t (S_{t−1}ᵀ a_t)ᵀ + k_t v_tᵀ      a reads the old state, b writes
///   o_t = scale · S_tᵀ q_t                                             scale = K^(-1/2) unless given
/// </code>
/// Orientation and order, pinned from fla: <c>fla/ops/generalized_delta_rule/dplr/naive.py</c>
/// (<c>dplr_recurrence</c>, S [K,V]: kv = k vᵀ + b (aᵀ S); S = S·exp(gk) + kv; o = (scale·q)ᵀ S) and the kernel of
/// <c>fused_recurrent_rwkv7</c> (h = exp(w) h + b (aᵀ h) + k vᵀ). So the low-rank term acts on the undecayed state
/// S_{t−1}, beside the decay, not after it: (Diag(exp(gk)) + b aᵀ) S, not (I + b aᵀ) Diag(exp(gk)) S. In the state's
/// K x V orientation the term is b aᵀ (a is the vector that reads S, b the one that writes); RWKV-7's own V x K
/// state reads the same rule as Sᵀ_t = Sᵀ_{t−1} (Diag(exp(w)) + a bᵀ) + v kᵀ (fla's comment "S_t = S_t @ (I + a bᵀ) +
/// v kᵀ"). In RWKV-7 itself a = −κ̂ and b = κ̂ ⊙ a_lr; those activations are the caller's.
///
/// The decay's name: fla's <c>chunk_rwkv7</c> and <c>fused_recurrent_rwkv7</c> pass <c>w</c> to the dplr kernels as
/// gk, i.e. <c>w</c> is the log decay (fused_recurrent_rwkv7 documents it so); we accept <c>w</c> and <c>log_w</c> as
/// aliases of gk with that meaning. Beware: fla's older <c>naive_recurrent_rwkv7</c> (<c>fla/ops/rwkv7/recurrent_naive.py</c>)
/// takes the raw RWKV parameter and decays by exp(−exp(w)); pass gk = −exp(w) for that convention. fla's
/// <c>chunk_rwkv7</c> defaults to scale = 1 and <c>chunk_dplr_delta_rule</c> to K^(-1/2); we default to K^(-1/2) like
/// every form here, so set scale=1 to compare with chunk_rwkv7's default.
///
/// Variants:
///   <c>recurrent</c>  the definition, one token at a time.
///   <c>chunked</c>    the WY representation of the DPLR chunkwise form (fla's <c>dplr_chunkwise</c>), any chunk size C ≥ 1,
///              decays in log space relative to the chunk start. In one chunk of n steps r = 0..n−1 from state S:
///     Γ_r = gk_0 + … + gk_r (inclusive),  Γ⁻_r = Γ_r − gk_r = gk_0 + … + gk_{r−1} (exclusive, Γ⁻_0 = 0)
///     w_r = S_{r−1}ᵀ a_r  (the value the low-rank term writes, fla's v2); unrolling S_{r−1} gives, for j &lt; r,
///       A_ab[r,j] = Σ_d a_r[d] b_j[d] exp(Γ⁻_r[d] − Γ_j[d])   A_ak[r,j] = Σ_d a_r[d] k_j[d] exp(Γ⁻_r[d] − Γ_j[d])
///       w_r = Σ_{j&lt;r} A_ab[r,j] w_j + Σ_{j&lt;r} A_ak[r,j] v_j + Sᵀ (exp(Γ⁻_r) ⊙ a_r)
///     1. Γ, Γ⁻.
///     2. A_ab, A_ak; T = (I − A_ab)⁻¹ by forward substitution: T_r = e_r + Σ_{j&lt;r} A_ab[r,j] T_j.
///     3. U = T A_ak V and W = T Ã with Ã_r = exp(Γ⁻_r) ⊙ a_r.
///     4. w = U + W S.
///     5. o_r = scale · ((q_r ⊙ exp(Γ_r))ᵀ S + Σ_{j≤r} [Σ_d q_r k_j e^{Γ_r−Γ_j}] v_j + [Σ_d q_r b_j e^{Γ_r−Γ_j}] w_j).
///     6. S ← Diag(exp(Γ_{n−1})) S + Σ_j Diag(exp(Γ_{n−1} − Γ_j)) (k_j v_jᵀ + b_j w_jᵀ).
///   Every exponent is a sum of log decays over a range of steps (≤ 0 for gk ≤ 0): nothing is divided.
/// </summary>
public static class Rwkv7
{
    /// <summary>The definition, token by token.</summary>
    public static DeltaResult Recurrent(Tensor q, Tensor k, Tensor v, Tensor a, Tensor b, Tensor gk, Rwkv7Options? options = null) =>
        Rwkv7Problem.Bind(q, k, v, a, b, gk, options ?? new Rwkv7Options()).Run(RecurrentHead);

    /// <summary>The WY chunkwise DPLR form with chunks of <paramref name="chunkSize"/> steps (the last may be shorter).</summary>
    public static DeltaResult Chunked(Tensor q, Tensor k, Tensor v, Tensor a, Tensor b, Tensor gk, int chunkSize, Rwkv7Options? options = null)
    {
        DeltaProblem.RequireChunkSize(chunkSize);
        return Rwkv7Problem.Bind(q, k, v, a, b, gk, options ?? new Rwkv7Options()).Run(x => ChunkedHead(x, chunkSize));
    }

    private static (double[] O, double[] S) RecurrentHead(Rwkv7Head x)
    {
        int dk = x.Dk, dv = x.Dv;
        double[] s = (double[])x.InitialState.Clone();
        var o = new double[x.Length * dv];
        var sa = new double[dv];
        for (int t = 0; t < x.Length; t++)
        {
            ReadOnlySpan<double> qt = Row(x.Q, t, dk), kt = Row(x.K, t, dk), vt = Row(x.V, t, dv);
            ReadOnlySpan<double> at = Row(x.A, t, dk), bt = Row(x.B, t, dk), gkt = Row(x.Gk, t, dk);
            // S_{t−1}ᵀ a_t, read before the state changes
            for (int c = 0; c < dv; c++)
            {
                double sum = 0;
                for (int d = 0; d < dk; d++)
                {
                    sum += s[d * dv + c] * at[d];
                }
                sa[c] = sum;
            }
            // S_t = Diag(exp(gk_t)) S_{t−1} + b_t (S_{t−1}ᵀ a_t)ᵀ + k_t v_tᵀ
            for (int d = 0; d < dk; d++)
            {
                double decay = Math.Exp(gkt[d]);
                for (int c = 0; c < dv; c++)
                {
                    s[d * dv + c] = decay * s[d * dv + c] + bt[d] * sa[c] + kt[d] * vt[c];
                }
            }
            // o_t = scale · S_tᵀ q_t
            for (int c = 0; c < dv; c++)
            {
                double sq = 0;
                for (int d = 0; d < dk; d++)
                {
                    sq += s[d * dv + c] * qt[d];
                }
                o[t * dv + c] = x.Scale * sq;
            }
        }
        return (o, s);
    }

    private static (double[] O, double[] S) ChunkedHead(Rwkv7Head x, int chunkSize)
    {
        int length = x.Length, dk = x.Dk, dv = x.Dv, cs = chunkSize;
        double[] s = (double[])x.InitialState.Clone();
        var o = new double[length * dv];
        var gamma = new double[cs * dk];       // Γ
        var gammaBefore = new double[cs * dk]; // Γ⁻
        var aab = new double[cs * cs];         // A_ab
        var aak = new double[cs * cs];         // A_ak
        var tMatrix = new double[cs * cs];     // T = (I − A_ab)⁻¹
        var akv = new double[cs * dv];         // A_ak V
        var u = new double[cs * dv];           // U
        var w = new double[cs * dk];           // W
        var wNew = new double[cs * dv];        // w = U + W S

        for (int start = 0; start < length; start += cs)
        {
            int n = Math.Min(cs, length - start);

            // 1. Γ_r (inclusive) and Γ⁻_r (exclusive), relative to the chunk start.
            for (int r = 0; r < n; r++)
            {
                for (int d = 0; d < dk; d++)
                {
                    gammaBefore[r * dk + d] = r == 0 ? 0 : gamma[(r - 1) * dk + d];
                    gamma[r * dk + d] = gammaBefore[r * dk + d] + x.Gk[(start + r) * dk + d];
                }
            }

            // 2. A_ab, A_ak (strictly lower); T = (I − A_ab)⁻¹ row by row.
            for (int r = 0; r < n; r++)
            {
                for (int j = 0; j < r; j++)
                {
                    double ab = 0, ak = 0;
                    for (int d = 0; d < dk; d++)
                    {
                        double ad = x.A[(start + r) * dk + d] * Math.Exp(gammaBefore[r * dk + d] - gamma[j * dk + d]);
                        ab += ad * x.B[(start + j) * dk + d];
                        ak += ad * x.K[(start + j) * dk + d];
                    }
                    aab[r * cs + j] = ab;
                    aak[r * cs + j] = ak;
                }
            }
            for (int r = 0; r < n; r++)
            {
                for (int c = 0; c < n; c++)
                {
                    double sum = c == r ? 1 : 0;
                    for (int j = c; j < r; j++)
                    {
                        sum += aab[r * cs + j] * tMatrix[j * cs + c];
                    }
                    tMatrix[r * cs + c] = c <= r ? sum : 0;
                }
            }

            // 3. U = T (A_ak V), W = T Ã with Ã_j = exp(Γ⁻_j) ⊙ a_j.
            for (int r = 0; r < n; r++)
            {
                for (int c = 0; c < dv; c++)
                {
                    double sum = 0;
                    for (int j = 0; j < r; j++)
                    {
                        sum += aak[r * cs + j] * x.V[(start + j) * dv + c];
                    }
                    akv[r * dv + c] = sum;
                }
            }
            for (int r = 0; r < n; r++)
            {
                for (int c = 0; c < dv; c++)
                {
                    double sum = 0;
                    for (int j = 0; j <= r; j++)
                    {
                        sum += tMatrix[r * cs + j] * akv[j * dv + c];
                    }
                    u[r * dv + c] = sum;
                }
                for (int d = 0; d < dk; d++)
                {
                    double sum = 0;
                    for (int j = 0; j <= r; j++)
                    {
                        sum += tMatrix[r * cs + j] * Math.Exp(gammaBefore[j * dk + d]) * x.A[(start + j) * dk + d];
                    }
                    w[r * dk + d] = sum;
                }
            }

            // 4. w = U + W S.
            for (int r = 0; r < n; r++)
            {
                for (int c = 0; c < dv; c++)
                {
                    double sum = u[r * dv + c];
                    for (int d = 0; d < dk; d++)
                    {
                        sum += w[r * dk + d] * s[d * dv + c];
                    }
                    wNew[r * dv + c] = sum;
                }
            }

            // 5. o_r = scale · ((q_r ⊙ exp(Γ_r))ᵀ S + Σ_{j≤r} [q_r·k_j]_Γ v_j + [q_r·b_j]_Γ w_j).
            for (int r = 0; r < n; r++)
            {
                Span<double> oRow = o.AsSpan((start + r) * dv, dv);
                for (int d = 0; d < dk; d++)
                {
                    double qd = x.Q[(start + r) * dk + d] * Math.Exp(gamma[r * dk + d]);
                    for (int c = 0; c < dv; c++)
                    {
                        oRow[c] += qd * s[d * dv + c];
                    }
                }
                for (int j = 0; j <= r; j++)
                {
                    double qk = 0, qb = 0;
                    for (int d = 0; d < dk; d++)
                    {
                        double qd = x.Q[(start + r) * dk + d] * Math.Exp(gamma[r * dk + d] - gamma[j * dk + d]);
                        qk += qd * x.K[(start + j) * dk + d];
                        qb += qd * x.B[(start + j) * dk + d];
                    }
                    for (int c = 0; c < dv; c++)
                    {
                        oRow[c] += qk * x.V[(start + j) * dv + c] + qb * wNew[j * dv + c];
                    }
                }
                for (int c = 0; c < dv; c++)
                {
                    oRow[c] *= x.Scale;
                }
            }

            // 6. S ← Diag(exp(Γ_{n−1})) S + Σ_j Diag(exp(Γ_{n−1} − Γ_j)) (k_j v_jᵀ + b_j w_jᵀ).
            int last = n - 1;
            for (int d = 0; d < dk; d++)
            {
                double decay = Math.Exp(gamma[last * dk + d]);
                for (int c = 0; c < dv; c++)
                {
                    s[d * dv + c] *= decay;
                }
                for (int j = 0; j < n; j++)
                {
                    double toEnd = Math.Exp(gamma[last * dk + d] - gamma[j * dk + d]);
                    double kj = toEnd * x.K[(start + j) * dk + d], bj = toEnd * x.B[(start + j) * dk + d];
                    for (int c = 0; c < dv; c++)
                    {
                        s[d * dv + c] += kj * x.V[(start + j) * dv + c] + bj * wNew[j * dv + c];
                    }
                }
            }
        }
        return (o, s);
    }

    private static ReadOnlySpan<double> Row(double[] x, int t, int width) => x.AsSpan(t * width, width);
}

/// <summary>The options of <see cref="Rwkv7"/>, named as in fla's <c>chunk_dplr_delta_rule</c>.</summary>
public sealed record Rwkv7Options
{
    /// <summary>Output scale; null means K^(-1/2).</summary>
    public double? Scale { get; init; }

    /// <summary>The state each sequence starts from, [N,H,K,V]; null means zeros.</summary>
    public Tensor? InitialState { get; init; }

    /// <summary>Varlen offsets [N+1] (B = 1); null means each batch entry is one sequence.</summary>
    public Tensor? CuSeqlens { get; init; }
}

/// <summary>The inputs of one (sequence, head) pair of <see cref="Rwkv7"/>, gathered into row-major arrays.</summary>
internal sealed record Rwkv7Head(int Length, int Dk, int Dv, double Scale, double[] Q, double[] K, double[] V,
    double[] A, double[] B, double[] Gk, double[] InitialState);

/// <summary>Validation and per-head plumbing of <see cref="Rwkv7"/>.</summary>
internal sealed class Rwkv7Problem
{
    private readonly Tensor _q, _k, _v, _a, _b, _gk;
    private readonly Tensor? _initialState;
    private readonly int _batch, _time, _heads, _dk, _dv;
    private readonly double _scale;
    private readonly IReadOnlyList<SequenceSlice> _slices;

    private Rwkv7Problem(Tensor q, Tensor k, Tensor v, Tensor a, Tensor b, Tensor gk, Dims dims, Rwkv7Options options,
        IReadOnlyList<SequenceSlice> slices)
    {
        (_q, _k, _v, _a, _b, _gk) = (q, k, v, a, b, gk);
        (_batch, _time, _heads, _dk, _dv) = (dims["B"], dims["T"], dims["H"], dims["K"], dims["V"]);
        _initialState = options.InitialState;
        _scale = options.Scale ?? 1 / Math.Sqrt(_dk);
        _slices = slices;
    }

    public static Rwkv7Problem Bind(Tensor q, Tensor k, Tensor v, Tensor a, Tensor b, Tensor gk, Rwkv7Options options)
    {
        var dims = new Dims();
        dims.Bind("q", Dims.RequireFloat("q", q), "B,T,H,K");
        dims.Bind("k", Dims.RequireFloat("k", k), "B,T,H,K");
        dims.Bind("v", Dims.RequireFloat("v", v), "B,T,H,V");
        dims.Bind("a", Dims.RequireFloat("a", a), "B,T,H,K");
        dims.Bind("b", Dims.RequireFloat("b", b), "B,T,H,K");
        dims.Bind("gk", Dims.RequireFloat("gk", gk), "B,T,H,K");
        var slices = Sequences.Slices(dims["B"], dims["T"], options.CuSeqlens);
        dims.Set("N", Sequences.StateCount(slices));
        if (options.InitialState is { } s0)
        {
            dims.Bind("initial_state", Dims.RequireFloat("initial_state", s0), "N,H,K,V");
        }
        if (options.Scale is { } scale && !double.IsFinite(scale))
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture, $"parameter 'scale' must be finite, found {scale}"));
        }
        return new Rwkv7Problem(q, k, v, a, b, gk, dims, options, slices);
    }

    /// <summary>Runs <paramref name="perHead"/> on every (sequence, head) pair; it returns o's rows and the final S.</summary>
    public DeltaResult Run(Func<Rwkv7Head, (double[] O, double[] S)> perHead)
    {
        var result = SequenceHeads.Run(_slices, _batch, _time, _heads, _dv, [new StateTensor(_initialState, _dk, _dv)], pair =>
        {
            var (o, s) = perHead(new Rwkv7Head(pair.Length, _dk, _dv, _scale, pair.Gather(_q), pair.Gather(_k), pair.Gather(_v),
                pair.Gather(_a), pair.Gather(_b), pair.Gather(_gk), pair.State()));
            pair.WriteO(o);
            s.CopyTo(pair.State(), 0);
        });
        return new DeltaResult(result.O, result.FinalStates[0]);
    }
}
