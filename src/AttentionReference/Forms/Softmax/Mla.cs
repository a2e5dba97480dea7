using System.Globalization;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Softmax;

/// <summary>
/// Multi-head latent attention (MLA, DeepSeek-V2/V3) at kernel level, exact, in double: softmax attention whose keys
/// and values are per-head up-projections of one shared latent cache, plus a decoupled RoPE part shared by all heads.
/// <code>
/// Shapes (layout [B,T,H,D]; the cache tensors have no head axis):
///   q_nope [B,Tq,H,Dn]   q_pe [B,Tq,H,Dr]   c_kv [B,Sk,Dc]   k_pe [B,Sk,Dr]
///   w_uk [H,Dn,Dc]   w_uv [H,Dv,Dc]        (or wkv_b [H,Dn+Dv,Dc] = [w_uk; w_uv] stacked per head)
///   →   o [B,Tq,H,Dv]   lse [B,Tq,H]
///   Dn = qk_nope_head_dim, Dr = qk_rope_head_dim, Dc = kv_lora_rank, Dv = v_head_dim (DeepSeek-V3: 128, 64, 512, 128);
///   Sk = the cache length (FlashMLA's s_k).
///
/// For each batch b, head h, query position i, key position j (d_i = i + Sk − Tq, bottom-right as flash-attn/FlashMLA):
///   A_i    = { j : j ≤ d_i }  if causal, else every j
///   naive (expand the latent per head, then ordinary softmax attention):
///     kn_j   = W_UK[h] c_j                                      [Dn]   k_j = [kn_j ; k_pe_j]
///     v_j    = W_UV[h] c_j                                      [Dv]
///     s_ij   = scale · (q_nope_i · kn_j + q_pe_i · k_pe_j)
///     o_i    = Σ_{j∈A_i} softmax_j(s_ij) v_j
///   absorbed (W_UK folded into the query, W_UV into the output; the scores read the latent cache directly):
///     ql_i   = W_UK[h]ᵀ q_nope_i                                [Dc]
///     s_ij   = scale · (ql_i · c_j + q_pe_i · k_pe_j)            (= the naive score: ql_i · c_j = q_nope_i · W_UK[h] c_j)
///     ol_i   = Σ_{j∈A_i} softmax_j(s_ij) c_j                    [Dc]
///     o_i    = W_UV[h] ol_i                                      (= the naive output, by linearity)
///   both:  m_i = max_{j∈A_i} s_ij,  lse_i = m_i + ln Σ_{j∈A_i} exp(s_ij − m_i)
///   scale = (Dn + Dr)^(-1/2) unless given (DeepSeek's softmax_scale = qk_head_dim^-0.5, before any YaRN mscale).
/// </code>
/// Sources: DeepSeek-AI 2024, "DeepSeek-V2" (arXiv 2405.04434), §2.1.2–2.1.3 (low-rank key-value joint compression,
/// decoupled RoPE, absorbing W^UK into W^Q and W^UV into W^O at inference); DeepSeek-V3's inference code
/// (deepseek-ai/DeepSeek-V3, inference/model.py, class MLA): attn_impl "naive" caches k = [k_nope; k_pe] and v per
/// head, attn_impl "absorb" caches kv_cache [B,T,kv_lora_rank] and pe_cache [B,T,qk_rope_head_dim] and computes
/// scores = (q_nope·W_UK)·kv_cache + q_pe·pe_cache, then (p·kv_cache)·W_UV — the two variants here, with its names
/// and its weight layout: wkv_b.weight viewed as [H, Dn+Dv, Dc], W_UK = wkv_b[:, :Dn], W_UV = wkv_b[:, −Dv:].
/// FlashMLA (deepseek-ai/FlashMLA) is the absorbed kernel with its q = [ql; q_pe] and kv = [c; k_pe] concatenated
/// (d_qk = 576, d_v = 512): its output is ol (before W_UV) and its test reference aligns causal masks bottom-right
/// (tril(diagonal = s_k − s_q)), as here. To check such a kernel, give q_nope = ql with w_uk = w_uv = I [H,Dc,Dc]
/// and its softmax_scale: then o = ol.
///
/// Choices. RoPE is applied outside: q_pe and k_pe are given already rotated (DeepSeek applies apply_rotary_emb
/// before caching k_pe; kernels receive the rotated cache). k_pe is shared by all heads (MQA-like), as in the paper.
/// The latent c is taken after DeepSeek's kv_norm (the cached value). The up-projections are accepted either as
/// w_uk and w_uv or as DeepSeek-V3's wkv_b [H, Dn+Dv, Dc] (split at Dn = q_nope's last extent). No W^O: the form
/// stops at the per-head output o, as attention kernels do.
///
/// Empty rows. With causal and Tq > Sk the first queries see no key: o_i = 0 and lse_i = −∞ (flash-attn's
/// convention; FlashMLA's sparse kernels report lse = +∞ for such rows instead).
/// </summary>
public static class Mla
{
    /// <summary>The expanded form: k and v up-projected per head from the latent, then softmax attention row by row.</summary>
    public static MlaResult Naive(Tensor qNope, Tensor qPe, Tensor cKv, Tensor kPe, Tensor wUk, Tensor wUv, MlaOptions? options = null)
    {
        var p = MlaProblem.Bind(qNope, qPe, cKv, kPe, wUk, wUv, options ?? new MlaOptions());
        var o = Tensor.Zeros(p.Batch, p.Tq, p.H, p.Dv);
        var lse = Tensor.Zeros(p.Batch, p.Tq, p.H);

        // One task per (b, h): it expands that head's keys and values once, then runs every query row of it.
        Parallel.For(0, p.Batch * p.H, pair =>
        {
            int b = pair / p.H, h = pair % p.H;
            var kNope = new double[p.Sk * p.Dn];
            var v = new double[p.Sk * p.Dv];
            for (int j = 0; j < p.Sk; j++)
            {
                p.UpProject(p.WUk, h, p.Dn, p.Latent(b, j), kNope.AsSpan(j * p.Dn, p.Dn)); // kn_j = W_UK[h] c_j
                p.UpProject(p.WUv, h, p.Dv, p.Latent(b, j), v.AsSpan(j * p.Dv, p.Dv));     // v_j  = W_UV[h] c_j
            }
            var s = new double[p.Sk];
            for (int i = 0; i < p.Tq; i++)
            {
                int end = p.KeyEnd(i);
                for (int j = 0; j < end; j++)
                {
                    s[j] = p.Scale * (VectorKernels.Dot(p.QueryNope(b, h, i), kNope.AsSpan(j * p.Dn, p.Dn))
                                      + VectorKernels.Dot(p.QueryRope(b, h, i), p.KeyRope(b, j)));
                }
                Span<double> oRow = o.Data.AsSpan(((b * p.Tq + i) * p.H + h) * p.Dv, p.Dv);
                lse[b, i, h] = SoftmaxRow(s.AsSpan(0, end), v, p.Dv, oRow);
            }
        });
        return new MlaResult(o, lse);
    }

    /// <summary>The absorbed form: W_UK folded into the query, scores and weighted sum on the latent cache, W_UV at the end.</summary>
    public static MlaResult Absorbed(Tensor qNope, Tensor qPe, Tensor cKv, Tensor kPe, Tensor wUk, Tensor wUv, MlaOptions? options = null)
    {
        var p = MlaProblem.Bind(qNope, qPe, cKv, kPe, wUk, wUv, options ?? new MlaOptions());
        var o = Tensor.Zeros(p.Batch, p.Tq, p.H, p.Dv);
        var lse = Tensor.Zeros(p.Batch, p.Tq, p.H);
        // The latent cache of batch b, [Sk, Dc] row-major, is read in place: it plays the part of both k and v.
        Parallel.For(0, p.Batch * p.H, pair =>
        {
            int b = pair / p.H, h = pair % p.H;
            ReadOnlySpan<double> cache = p.CKv.Data.AsSpan(b * p.Sk * p.Dc, p.Sk * p.Dc);
            var qLatent = new double[p.Dc];
            var oLatent = new double[p.Dc];
            var s = new double[p.Sk];
            for (int i = 0; i < p.Tq; i++)
            {
                // ql_i = W_UK[h]ᵀ q_nope_i: row n of W_UK[h] weighted by q_nope_i[n].
                Array.Clear(qLatent);
                ReadOnlySpan<double> qn = p.QueryNope(b, h, i);
                for (int n = 0; n < p.Dn; n++)
                {
                    VectorKernels.Axpy(qn[n], p.WeightRow(p.WUk, h, p.Dn, n), qLatent);
                }
                int end = p.KeyEnd(i);
                for (int j = 0; j < end; j++)
                {
                    s[j] = p.Scale * (VectorKernels.Dot(qLatent, p.Latent(b, j)) + VectorKernels.Dot(p.QueryRope(b, h, i), p.KeyRope(b, j)));
                }
                Array.Clear(oLatent);
                lse[b, i, h] = SoftmaxRow(s.AsSpan(0, end), cache, p.Dc, oLatent); // ol_i = Σ p_ij c_j
                p.UpProject(p.WUv, h, p.Dv, oLatent, o.Data.AsSpan(((b * p.Tq + i) * p.H + h) * p.Dv, p.Dv)); // o_i = W_UV[h] ol_i
            }
        });
        return new MlaResult(o, lse);
    }

    /// <summary>
    /// DeepSeek-V3's wkv_b [H, Dn+Dv, Dc] (its Linear weight viewed per head) split into W_UK = the first Dn rows of
    /// each head and W_UV = the remaining Dv rows.
    /// </summary>
    public static (Tensor WUk, Tensor WUv) SplitWkvB(Tensor wkvB, int dNope)
    {
        Dims.RequireFloat("wkv_b", wkvB);
        if (wkvB.Rank != 3 || dNope > wkvB.Dim(1))
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"expected shape [H,Dn+Dv,Dc] with Dn = {dNope} (q_nope's last extent), found {wkvB.ShapeString}"), tensor: "wkv_b");
        }
        int h = wkvB.Dim(0), rows = wkvB.Dim(1), dc = wkvB.Dim(2), dv = rows - dNope;
        var wUk = Tensor.Zeros(h, dNope, dc);
        var wUv = Tensor.Zeros(h, dv, dc);
        for (int head = 0; head < h; head++)
        {
            Array.Copy(wkvB.Data, head * rows * dc, wUk.Data, head * dNope * dc, dNope * dc);
            Array.Copy(wkvB.Data, (head * rows + dNope) * dc, wUv.Data, head * dv * dc, dv * dc);
        }
        return (wUk, wUv);
    }

    /// <summary>
    /// The stable softmax of one row of scores <paramref name="s"/> (overwritten with exp(s − m)), accumulating
    /// Σ_j p_j · values[j] into <paramref name="output"/> (values are rows of <paramref name="width"/>); returns lse.
    /// An empty row leaves the output at 0 and returns −∞.
    /// </summary>
    private static double SoftmaxRow(Span<double> s, ReadOnlySpan<double> values, int width, Span<double> output)
    {
        if (s.IsEmpty)
        {
            return double.NegativeInfinity;
        }
        double m = VectorKernels.Max(s);
        double l = VectorKernels.ExpShiftedInPlace(s, m);
        for (int j = 0; j < s.Length; j++)
        {
            VectorKernels.Axpy(s[j], values.Slice(j * width, width), output);
        }
        VectorKernels.Scale(1 / l, output);
        return m + Math.Log(l);
    }

    /// <summary>The validated inputs of one MLA call and the row accessors both variants share.</summary>
    private sealed class MlaProblem
    {
        private MlaProblem(Tensor qNope, Tensor qPe, Tensor cKv, Tensor kPe, Tensor wUk, Tensor wUv, Dims dims, MlaOptions options)
        {
            (QNope, QPe, CKv, KPe, WUk, WUv) = (qNope, qPe, cKv, kPe, wUk, wUv);
            (Batch, Tq, Sk, H) = (dims["B"], dims["Tq"], dims["Sk"], dims["H"]);
            (Dn, Dr, Dc, Dv) = (dims["Dn"], dims["Dr"], dims["Dc"], dims["Dv"]);
            Scale = options.Scale ?? 1 / Math.Sqrt(Dn + Dr);
            Causal = options.Causal;
        }

        public Tensor QNope { get; }
        public Tensor QPe { get; }
        public Tensor CKv { get; }
        public Tensor KPe { get; }
        public Tensor WUk { get; }
        public Tensor WUv { get; }
        public int Batch { get; }
        public int Tq { get; }
        public int Sk { get; }
        public int H { get; }
        public int Dn { get; }
        public int Dr { get; }
        public int Dc { get; }
        public int Dv { get; }
        public double Scale { get; }
        public bool Causal { get; }

        public static MlaProblem Bind(Tensor qNope, Tensor qPe, Tensor cKv, Tensor kPe, Tensor wUk, Tensor wUv, MlaOptions options)
        {
            var dims = new Dims();
            dims.Bind("q_nope", Dims.RequireFloat("q_nope", qNope), "B,Tq,H,Dn");
            dims.Bind("q_pe", Dims.RequireFloat("q_pe", qPe), "B,Tq,H,Dr");
            dims.Bind("c_kv", Dims.RequireFloat("c_kv", cKv), "B,Sk,Dc");
            dims.Bind("k_pe", Dims.RequireFloat("k_pe", kPe), "B,Sk,Dr");
            dims.Bind("w_uk", Dims.RequireFloat("w_uk", wUk), "H,Dn,Dc");
            dims.Bind("w_uv", Dims.RequireFloat("w_uv", wUv), "H,Dv,Dc");
            return new MlaProblem(qNope, qPe, cKv, kPe, wUk, wUv, dims, options);
        }

        /// <summary>The end (exclusive) of query i's allowed keys: all Sk, or up to d_i = i + Sk − Tq under causal.</summary>
        public int KeyEnd(int i) => Causal ? Math.Clamp(i + Sk - Tq + 1, 0, Sk) : Sk;

        public ReadOnlySpan<double> QueryNope(int b, int h, int i) => QNope.Data.AsSpan(((b * Tq + i) * H + h) * Dn, Dn);

        public ReadOnlySpan<double> QueryRope(int b, int h, int i) => QPe.Data.AsSpan(((b * Tq + i) * H + h) * Dr, Dr);

        /// <summary>c_j of batch b: row j of the latent cache.</summary>
        public ReadOnlySpan<double> Latent(int b, int j) => CKv.Data.AsSpan((b * Sk + j) * Dc, Dc);

        public ReadOnlySpan<double> KeyRope(int b, int j) => KPe.Data.AsSpan((b * Sk + j) * Dr, Dr);

        /// <summary>Row n of head h's up-projection W [H, rows, Dc].</summary>
        public ReadOnlySpan<double> WeightRow(Tensor w, int h, int rows, int n) => w.Data.AsSpan((h * rows + n) * Dc, Dc);

        /// <summary>y = W[h] x for a latent vector x [Dc]: y_n = W[h][n] · x.</summary>
        public void UpProject(Tensor w, int h, int rows, ReadOnlySpan<double> x, Span<double> y)
        {
            for (int n = 0; n < rows; n++)
            {
                y[n] = VectorKernels.Dot(WeightRow(w, h, rows, n), x);
            }
        }
    }
}

/// <summary>The options of <see cref="Mla"/>; defaults give full attention with scale (Dn + Dr)^-1/2.</summary>
public sealed record MlaOptions
{
    /// <summary>Score scale; null means (Dn + Dr)^(-1/2).</summary>
    public double? Scale { get; init; }

    /// <summary>Causal masking, bottom-right: key j allowed for query i iff j ≤ i + Sk − Tq.</summary>
    public bool Causal { get; init; }
}

/// <summary>Outputs of MLA: o [B,Tq,H,Dv] and lse [B,Tq,H].</summary>
public sealed record MlaResult(Tensor O, Tensor Lse);
