using System.Globalization;
using AttentionReference.Forms.Common;
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
/// Gradients: from the cotangents do and dlse (absent: 0), dq_nope, dq_pe, dc_kv, dk_pe, dw_uk and dw_uv (dwkv_b =
/// [dw_uk; dw_uv] per head instead when the call gave wkv_b). naive: softmax's chain rule on the expanded k and v, then
/// back through k = [W_UK c; k_pe] and v = W_UV c; c and k_pe are read by every head, so their gradients sum over the
/// heads. absorbed: the chain rule of its own steps (dol = W_UVᵀ do, …, dq_nope = W_UK dql); the two give the same
/// gradients.
///
/// Empty rows. With causal and Tq > Sk the first queries see no key: o_i = 0 and lse_i = −∞ (flash-attn's
/// convention; FlashMLA's sparse kernels report lse = +∞ for such rows instead). The causal window and the stable
/// softmax of a row are softmax's (Scores.cs: Window, SoftmaxRow).
/// </summary>
public sealed class Mla : Form
{
    /// <inheritdoc/>
    public override FormContract Contract { get; } = new("mla", "softmax", "Mla.cs")
    {
        Variants = ["naive", "absorbed"],
        Inputs =
        [
            new("q_nope", "B,Tq,H,Dn", "query, non-RoPE part"),
            new("q_pe", "B,Tq,H,Dr", "query, RoPE part (already rotated)"),
            // The cache length Sk is not a T symbol: the cache has no head axis, so the layout option leaves it alone.
            new("c_kv", "B,Sk,Dc", "compressed key-value latent (DeepSeek's kv_cache, after kv_norm)", Aliases: ["kv_cache"]),
            new("k_pe", "B,Sk,Dr", "key RoPE part shared by all heads (already rotated; DeepSeek's pe_cache)", Aliases: ["pe_cache"]),
            new("w_uk", "H,Dn,Dc", "key up-projection W_UK (give w_uk and w_uv, or wkv_b)", Optional: true),
            new("w_uv", "H,Dv,Dc", "value up-projection W_UV", Optional: true),
            new("wkv_b", "H,Dnv,Dc", "DeepSeek-V3's wkv_b.weight viewed [H, Dn+Dv, Dc] = [W_UK; W_UV] per head", Optional: true),
        ],
        Outputs =
        [
            new("o", "B,Tq,H,Dv", "attention output per head (before W_O)"),
            new("lse", "B,Tq,H", "natural-log sum-exp of each row's scores (−inf for a row with no allowed key)"),
        ],
        Parameters = [SoftmaxSpecs.MlaScale, SoftmaxSpecs.Causal],
        TimeSymbols = ["Tq", "Sk"],
    };

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Run(string variant, Problem problem)
    {
        var options = MlaOptions.Read(problem);
        problem = WithUpProjections(problem);
        return variant switch
        {
            "naive" => Heads.Run(problem, head => Naive(head, options)),
            "absorbed" => Heads.Run(problem, head => Absorbed(head, options)),
            _ => throw UnknownVariant(variant),
        };
    }

    /// <summary>The definition, per (batch entry, head): k and v up-projected from the latent, then softmax attention.</summary>
    public static void Naive(Head head, MlaOptions options)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(options);
        RowBlock qNope = head.Rows("q_nope"), qPe = head.Rows("q_pe"), c = head.Rows("c_kv"), kPe = head.Rows("k_pe"), o = head.Rows("o");
        Series lse = head.Series("lse");
        Span<double> wUk = head.Row("w_uk"), wUv = head.Row("w_uv");
        int sk = c.Count;
        RowBlock kNope = RowBlock.Zeros(sk, head["Dn"]), v = RowBlock.Zeros(sk, head["Dv"]);
        for (int j = 0; j < sk; j++)
        {
            UpProject(wUk, c[j], kNope[j]); // kn_j = W_UK[h] c_j
            UpProject(wUv, c[j], v[j]);     // v_j  = W_UV[h] c_j
        }
        var values = new KeyValues(kNope, v, sk);
        int[] keys = Enumerable.Range(0, sk).ToArray();
        var scores = new double[sk];
        Window window = options.WindowOf(head.T, sk);
        for (int i = 0; i < head.T; i++)
        {
            int end = window.Keys(i, sk).End; // keys j < end: every key, or j ≤ d_i under causal
            Span<double> s = scores.AsSpan(0, end);
            for (int j = 0; j < end; j++)
            {
                s[j] = options.Scale * (VectorKernels.Dot(qNope[i], kNope[j]) + VectorKernels.Dot(qPe[i], kPe[j]));
            }
            lse[i] = SoftmaxRow.Attend(s, keys.AsSpan(0, end), values, o[i]); // o_i = Σ_j softmax_j(s_ij) v_j
        }
    }

    /// <summary>The absorbed form: W_UK folded into the query, the scores and the weighted sum on the latent cache, W_UV at the end.</summary>
    public static void Absorbed(Head head, MlaOptions options)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(options);
        RowBlock qNope = head.Rows("q_nope"), qPe = head.Rows("q_pe"), c = head.Rows("c_kv"), kPe = head.Rows("k_pe"), o = head.Rows("o");
        Series lse = head.Series("lse");
        Span<double> wUk = head.Row("w_uk"), wUv = head.Row("w_uv");
        int sk = c.Count, dc = c.Width;
        var latent = new KeyValues(c, c, sk); // the latent cache plays both k and v
        int[] keys = Enumerable.Range(0, sk).ToArray();
        var scores = new double[sk];
        var qLatent = new double[dc];
        var oLatent = new double[dc];
        Window window = options.WindowOf(head.T, sk);
        for (int i = 0; i < head.T; i++)
        {
            // ql_i = W_UK[h]ᵀ q_nope_i: row n of W_UK[h] weighted by q_nope_i[n].
            Array.Clear(qLatent);
            for (int n = 0; n < qNope.Width; n++)
            {
                VectorKernels.Axpy(qNope[i][n], wUk.Slice(n * dc, dc), qLatent);
            }
            int end = window.Keys(i, sk).End;
            Span<double> s = scores.AsSpan(0, end);
            for (int j = 0; j < end; j++)
            {
                s[j] = options.Scale * (VectorKernels.Dot(qLatent, c[j]) + VectorKernels.Dot(qPe[i], kPe[j]));
            }
            Array.Clear(oLatent);
            lse[i] = SoftmaxRow.Attend(s, keys.AsSpan(0, end), latent, oLatent); // ol_i = Σ_j softmax_j(s_ij) c_j
            UpProject(wUv, oLatent, o[i]);                                       // o_i = W_UV[h] ol_i
        }
    }

    /// <inheritdoc/>
    public override bool HasGradients => true;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Backward(string variant, Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        var options = MlaOptions.Read(problem);
        Problem expanded = WithUpProjections(problem);
        var gradients = variant switch
        {
            "naive" => Heads.Backward(expanded, head => NaiveBackward(head, options)),
            "absorbed" => Heads.Backward(expanded, head => AbsorbedBackward(head, options)),
            _ => throw UnknownVariant(variant),
        };
        return problem.Has("wkv_b") ? Stacked(gradients, expanded) : gradients;
    }

    /// <summary>
    /// The backward pass of the definition, per (batch entry, head): softmax's chain rule on the expanded keys and values,
    /// then back through the expansion kn_j = W_UK[h] c_j, v_j = W_UV[h] c_j:
    /// <code>
    ///   P_ij = exp(s_ij − lse_i),  D_i = rowsum(do_i ∘ o_i) − dlse_i,  dS_ij = P_ij (do_i · v_j − D_i)
    ///   dv_j      += P_ij do_i
    ///   dq_nope_i += scale · Σ_j dS_ij kn_j,     dq_pe_i += scale · Σ_j dS_ij k_pe_j
    ///   dkn_j     += scale · dS_ij q_nope_i,     dk_pe_j += scale · dS_ij q_pe_i       (k_pe read by every head: summed)
    ///   dc_j      += W_UK[h]ᵀ dkn_j + W_UV[h]ᵀ dv_j                                   (c read by every head: summed)
    ///   dW_UK[h]  += Σ_j dkn_j c_jᵀ,            dW_UV[h] += Σ_j dv_j c_jᵀ
    /// </code>
    /// </summary>
    public static void NaiveBackward(Head head, MlaOptions options)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(options);
        RowBlock qNope = head.Rows("q_nope"), qPe = head.Rows("q_pe"), c = head.Rows("c_kv"), kPe = head.Rows("k_pe");
        RowBlock dqNope = head.Rows("dq_nope"), dqPe = head.Rows("dq_pe"), dc = head.Rows("dc_kv"), dkPe = head.Rows("dk_pe");
        Span<double> wUk = head.Row("w_uk"), wUv = head.Row("w_uv"), dwUk = head.Row("dw_uk"), dwUv = head.Row("dw_uv");
        RowBlock? dO = head.OptionalRows("do");
        Series? dLse = head.OptionalSeries("dlse");
        int sk = c.Count;
        RowBlock kNope = RowBlock.Zeros(sk, head["Dn"]), v = RowBlock.Zeros(sk, head["Dv"]);
        for (int j = 0; j < sk; j++)
        {
            UpProject(wUk, c[j], kNope[j]); // kn_j = W_UK[h] c_j
            UpProject(wUv, c[j], v[j]);     // v_j  = W_UV[h] c_j
        }
        var values = new KeyValues(kNope, v, sk);
        var expanded = KeyValues.Zeros(sk, head["Dn"], head["Dv"]); // dkn_j and dv_j
        int[] keys = Enumerable.Range(0, sk).ToArray();
        var scores = new double[sk];
        var weights = new double[sk];
        var o = new double[head["Dv"]];
        Window window = options.WindowOf(head.T, sk);
        for (int i = 0; i < head.T; i++)
        {
            int end = window.Keys(i, sk).End;
            Span<double> s = scores.AsSpan(0, end);
            for (int j = 0; j < end; j++)
            {
                s[j] = options.Scale * (VectorKernels.Dot(qNope[i], kNope[j]) + VectorKernels.Dot(qPe[i], kPe[j]));
            }
            s.CopyTo(weights);
            Array.Clear(o);
            double lse = SoftmaxRow.Attend(weights.AsSpan(0, end), keys.AsSpan(0, end), values, o); // the forward replayed
            ReadOnlySpan<double> doI = dO is null ? [] : dO[i];
            double d = (dO is null ? 0 : VectorKernels.Dot(doI, o)) - (dLse?[i] ?? 0);
            SoftmaxRow.Backward(s, keys.AsSpan(0, end), values, lse, d, doI, expanded); // s ← dS_ij, dv_j
            for (int j = 0; j < end; j++)
            {
                double dS = options.Scale * s[j];
                VectorKernels.Axpy(dS, kNope[j], dqNope[i]);
                VectorKernels.Axpy(dS, kPe[j], dqPe[i]);
                VectorKernels.Axpy(dS, qNope[i], expanded.Key(j));
                VectorKernels.Axpy(dS, qPe[i], dkPe[j]);
            }
        }
        for (int j = 0; j < sk; j++)
        {
            AddTransposed(wUk, expanded.Key(j), dc[j]);   // dc_j += W_UKᵀ dkn_j
            AddTransposed(wUv, expanded.Value(j), dc[j]); // dc_j += W_UVᵀ dv_j
            AddOuter(dwUk, expanded.Key(j), c[j]);        // dW_UK += dkn_j c_jᵀ
            AddOuter(dwUv, expanded.Value(j), c[j]);      // dW_UV += dv_j c_jᵀ
        }
    }

    /// <summary>
    /// The absorbed form's backward, per (batch entry, head), the chain rule of its own steps in reverse:
    /// <code>
    ///   dol_i     = W_UV[h]ᵀ do_i,   dW_UV[h] += do_i ol_iᵀ                     o_i = W_UV[h] ol_i
    ///   D_i       = dol_i · ol_i − dlse_i  (= do_i · o_i − dlse_i),   dS_ij = P_ij (dol_i · c_j − D_i)
    ///   dc_j     += P_ij dol_i                                                  ol_i = Σ_j P_ij c_j
    ///   dql_i     = scale · Σ_j dS_ij c_j,   dq_pe_i = scale · Σ_j dS_ij k_pe_j
    ///   dc_j     += scale · dS_ij ql_i,      dk_pe_j += scale · dS_ij q_pe_i     s_ij = scale (ql_i · c_j + q_pe_i · k_pe_j)
    ///   dq_nope_i = W_UK[h] dql_i,           dW_UK[h] += q_nope_i dql_iᵀ         ql_i = W_UK[h]ᵀ q_nope_i
    /// </code>
    /// </summary>
    public static void AbsorbedBackward(Head head, MlaOptions options)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(options);
        RowBlock qNope = head.Rows("q_nope"), qPe = head.Rows("q_pe"), c = head.Rows("c_kv"), kPe = head.Rows("k_pe");
        RowBlock dqNope = head.Rows("dq_nope"), dqPe = head.Rows("dq_pe"), dc = head.Rows("dc_kv"), dkPe = head.Rows("dk_pe");
        Span<double> wUk = head.Row("w_uk"), wUv = head.Row("w_uv"), dwUk = head.Row("dw_uk"), dwUv = head.Row("dw_uv");
        RowBlock? dO = head.OptionalRows("do");
        Series? dLse = head.OptionalSeries("dlse");
        int sk = c.Count, dcWidth = c.Width;
        var latent = new KeyValues(c, c, sk);    // the latent cache plays both k and v
        var dLatent = new KeyValues(dc, dc, sk); // and takes both gradients
        int[] keys = Enumerable.Range(0, sk).ToArray();
        var scores = new double[sk];
        var weights = new double[sk];
        double[] qLatent = new double[dcWidth], oLatent = new double[dcWidth], dqLatent = new double[dcWidth], doLatent = new double[dcWidth];
        Window window = options.WindowOf(head.T, sk);
        for (int i = 0; i < head.T; i++)
        {
            Array.Clear(qLatent);
            AddTransposed(wUk, qNope[i], qLatent); // ql_i = W_UK[h]ᵀ q_nope_i
            int end = window.Keys(i, sk).End;
            Span<double> s = scores.AsSpan(0, end);
            for (int j = 0; j < end; j++)
            {
                s[j] = options.Scale * (VectorKernels.Dot(qLatent, c[j]) + VectorKernels.Dot(qPe[i], kPe[j]));
            }
            s.CopyTo(weights);
            Array.Clear(oLatent);
            double lse = SoftmaxRow.Attend(weights.AsSpan(0, end), keys.AsSpan(0, end), latent, oLatent); // ol_i, lse_i replayed
            Array.Clear(doLatent);
            double d = -(dLse?[i] ?? 0);
            if (dO is not null)
            {
                AddTransposed(wUv, dO[i], doLatent); // dol_i = W_UV[h]ᵀ do_i
                AddOuter(dwUv, dO[i], oLatent);      // dW_UV += do_i ol_iᵀ
                d += VectorKernels.Dot(doLatent, oLatent);
            }
            SoftmaxRow.Backward(s, keys.AsSpan(0, end), latent, lse, d, dO is null ? [] : doLatent, dLatent); // s ← dS_ij, dc_j += P_ij dol_i
            Array.Clear(dqLatent);
            for (int j = 0; j < end; j++)
            {
                double dS = options.Scale * s[j];
                VectorKernels.Axpy(dS, c[j], dqLatent);
                VectorKernels.Axpy(dS, kPe[j], dqPe[i]);
                VectorKernels.Axpy(dS, qLatent, dc[j]);
                VectorKernels.Axpy(dS, qPe[i], dkPe[j]);
            }
            UpProject(wUk, dqLatent, dqNope[i]); // dq_nope_i = W_UK[h] dql_i
            AddOuter(dwUk, qNope[i], dqLatent);  // dW_UK += q_nope_i dql_iᵀ
        }
    }

    /// <summary>x += Wᵀ y for W [rows x Dc] (row n at n·Dc): x += Σ_n y_n W[n].</summary>
    private static void AddTransposed(ReadOnlySpan<double> w, ReadOnlySpan<double> y, Span<double> x)
    {
        for (int n = 0; n < y.Length; n++)
        {
            VectorKernels.Axpy(y[n], w.Slice(n * x.Length, x.Length), x);
        }
    }

    /// <summary>W += a bᵀ for W [a.Length x b.Length] row-major: W[n] += a_n b.</summary>
    private static void AddOuter(Span<double> w, ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        for (int n = 0; n < a.Length; n++)
        {
            VectorKernels.Axpy(a[n], b, w.Slice(n * b.Length, b.Length));
        }
    }

    /// <summary>The gradients of a call given wkv_b: dwkv_b [H, Dn+Dv, Dc] = [dW_UK; dW_UV] stacked per head, in place of dw_uk and dw_uv.</summary>
    private static Dictionary<string, Tensor> Stacked(IReadOnlyDictionary<string, Tensor> gradients, Problem problem)
    {
        Tensor dwUk = gradients["dw_uk"], dwUv = gradients["dw_uv"], dwkvB = gradients["dwkv_b"];
        int h = problem["H"], uk = problem["Dn"] * problem["Dc"], uv = problem["Dv"] * problem["Dc"];
        for (int head = 0; head < h; head++)
        {
            Array.Copy(dwUk.Data, head * uk, dwkvB.Data, head * (uk + uv), uk);
            Array.Copy(dwUv.Data, head * uv, dwkvB.Data, head * (uk + uv) + uk, uv);
        }
        return gradients.Where(p => p.Key is not ("dw_uk" or "dw_uv")).ToDictionary();
    }

    /// <summary>y = W x for W [rows x Dc] (row n at n·Dc) and a latent vector x [Dc]: y_n = W[n] · x.</summary>
    private static void UpProject(ReadOnlySpan<double> w, ReadOnlySpan<double> x, Span<double> y)
    {
        for (int n = 0; n < y.Length; n++)
        {
            y[n] = VectorKernels.Dot(w.Slice(n * x.Length, x.Length), x);
        }
    }

    /// <summary>
    /// The call with w_uk and w_uv: as given, or DeepSeek-V3's wkv_b [H, Dn+Dv, Dc] split into W_UK = the first Dn rows
    /// of each head and W_UV = the remaining Dv rows; exactly one of the two ways.
    /// </summary>
    internal static Problem WithUpProjections(Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        var (wUk, wUv, wkvB) = (problem.Optional("w_uk"), problem.Optional("w_uv"), problem.Optional("wkv_b"));
        if (wkvB is null)
        {
            _ = wUk ?? throw new InputException("missing (expected shape [H,Dn,Dc]; or give wkv_b [H,Dn+Dv,Dc])", tensor: "w_uk");
            _ = wUv ?? throw new InputException("missing (expected shape [H,Dv,Dc]; or give wkv_b [H,Dn+Dv,Dc])", tensor: "w_uv");
            return problem;
        }
        if (wUk is not null || wUv is not null)
        {
            throw new InputException("give either wkv_b or w_uk and w_uv, not both", tensor: "wkv_b");
        }
        int h = problem["H"], dn = problem["Dn"], rows = problem["Dnv"], dc = problem["Dc"], dv = rows - dn;
        if (dv < 0)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"expected shape [H,Dn+Dv,Dc] with Dn = {dn} (q_nope's last extent), found {wkvB.ShapeString}"), tensor: "wkv_b");
        }
        problem.Dims.Set("Dv", dv);
        var (uk, uv) = (Tensor.Zeros(h, dn, dc), Tensor.Zeros(h, dv, dc));
        for (int head = 0; head < h; head++)
        {
            Array.Copy(wkvB.Data, head * rows * dc, uk.Data, head * dn * dc, dn * dc);
            Array.Copy(wkvB.Data, (head * rows + dn) * dc, uv.Data, head * dv * dc, dv * dc);
        }
        return problem.With("w_uk", uk, "H,Dn,Dc").With("w_uv", uv, "H,Dv,Dc");
    }
}

/// <summary>The options of an MLA call, read once from the bound call; the CPU form and the OpenCL host read the same.</summary>
/// <param name="Scale">The score scale, (Dn + Dr)^(-1/2) unless given (DeepSeek's softmax_scale).</param>
/// <param name="Causal">Causal masking, bottom-right: key j allowed for query i iff j ≤ i + Sk − Tq.</param>
public sealed record MlaOptions(double Scale, bool Causal)
{
    /// <summary>The options of <paramref name="problem"/>.</summary>
    public static MlaOptions Read(Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        return new(problem.Get(SoftmaxSpecs.MlaScale) ?? 1 / Math.Sqrt(problem["Dn"] + problem["Dr"]), problem.Get(SoftmaxSpecs.Causal));
    }

    /// <summary>The keys of a query: all Sk, or those up to its bottom-right diagonal under causal.</summary>
    public Window WindowOf(int tq, int sk) => Causal ? Window.Causal(tq, sk) : Window.Full;
}
