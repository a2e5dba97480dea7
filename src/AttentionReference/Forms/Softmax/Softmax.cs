using AttentionReference.Forms.Common;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Softmax;

/// <summary>
/// Softmax attention, exact, in double.
/// <code>
/// Shapes (layout [B,T,H,D], as flash-attn):
///   q [B,Tq,Hq,K]   k [B,Tk,Hkv,K]   v [B,Tk,Hkv,V]   →   o [B,Tq,Hq,V]   lse [B,Tq,Hq]
///   Hq is a multiple of Hkv (GQA/MQA): query head h reads key/value head h / (Hq/Hkv).
///   mask broadcastable to [B,Hq,Tq,Tk]; alibi_slopes [Hq] or [B,Hq]
///   varlen: B = 1, cu_seqlens_q [N+1], cu_seqlens_k [N+1]; sequence n is queries cu_q[n]..cu_q[n+1] against keys
///           cu_k[n]..cu_k[n+1], with its own Tq_n, Tk_n (and its own diagonal) in everything below.
///
/// For each batch (or sequence) b, query head h and query position i:
///   s_ij  = scale · q_i · k_j                         scale = K^(-1/2) unless given
///   s_ij ← c · tanh(s_ij / c)                         softcap c > 0 only
///   s_ij ← s_ij − slope_h · |i + Tk − Tq − j|         alibi_slopes only
///   s_ij ← s_ij + mask_ij                             additive mask only
///   A_i   = { j : i + Tk − Tq − wl ≤ j ≤ i + Tk − Tq + wr, mask_ij ≠ −∞ }    the allowed keys
///   m_i   = max_{j∈A_i} s_ij                          the max: no exp ever overflows
///   l_i   = Σ_{j∈A_i} exp(s_ij − m_i)
///   o_i   = Σ_{j∈A_i} exp(s_ij − m_i) v_j / l_i
///   lse_i = m_i + ln l_i                              natural log, as flash-attn's softmax_lse
/// s_ij and A_i are written once, in Scores.cs, for every variant (and for sparse's patterns and forgetting's bias).
/// </code>
/// Masks. The diagonal i + Tk − Tq is flash-attn's bottom-right alignment (flash-attn ≥ 2.1): when Tq ≠ Tk the last
/// query sees the last key. <c>causal</c> sets wr = 0; <c>window_left</c> = wl and <c>window_right</c> = wr are
/// counted from that diagonal, and −1 means unbounded on that side (flash-attn's window_size). With
/// <c>causal_align=top_left</c> the diagonal is i instead (PyTorch SDPA's is_causal, which aligns top-left), for the
/// windows and ALiBi alike. <c>mask</c> follows PyTorch SDPA's attn_mask: any shape that broadcasts to [B,Hq,Tq,Tk]
/// (axes aligned right, each 1 or full: [Tq,Tk], [B,1,Tq,Tk], [1,Hq,Tq,Tk], ...). A bool mask (an integer tensor, or
/// a float 0/1 tensor with mask_type=bool) keeps key j where it is true, as SDPA; it is exactly the additive mask
/// with 0 for true and −∞ for false. An additive mask is added to the score after the softcap, like a bias; −∞
/// removes the key from A_i. With varlen the mask is indexed by packed positions [1,Hq,ΣTq_n,ΣTk_n].
///
/// ALiBi, as flash-attn: the bias −slope·|i + Tk − Tq − j| is added after the softcap (flash-attn applies softcap to
/// the scaled score, then its mask, which adds the ALiBi bias; it divides the slope by the softmax scale, so the bias
/// lands on the scaled score unscaled). One difference we do not copy: flash-attn's causal kernels add +slope·j
/// instead (mask.h, "Is_causal: same bias vector for all rows"), which differs from our bias by slope·(i + Tk − Tq),
/// constant along the row: o is identical, but flash-attn's causal-ALiBi lse is ours plus slope·(i + Tk − Tq). We
/// keep the definition from flash-attn's docstring (and its test reference, and its non-causal kernels) for both.
///
/// Empty rows. A query with A_i = ∅ (Tq > Tk under causal, a window outside the keys, a mask row all false or −∞,
/// Tk = 0) gives o_i = 0 and lse_i = −∞, as flash-attn does ("if the row of the mask is all zero, the output will be
/// zero"). PyTorch SDPA's math backend gives NaN there instead (softmax over all −∞); we follow flash-attn because
/// its kernels are the ones checked against us. An additive +∞ is not a mask: it gives NaN in its row, as in PyTorch.
///
/// NaN. A NaN propagates only to the rows that read it, and every variant reads the same values. Which rows:
///   q_i (any component)      o_i and lse_i entirely, unless A_i = ∅ (an empty row reads no score: o = 0, lse = −∞)
///   k_j (any component)      o_i and lse_i entirely, for every row of the heads that read it with j ∈ A_i
///   v_j component d          only o_i[d], for every row of the heads that read it with j ∈ A_i; lse_i stays exact
///   additive mask_ij         o_i and lse_i entirely when j is in i's window (NaN ≠ −∞, so j stays in A_i)
///   alibi slope of head h    every non-empty row of head h (the bias slope·0 on the diagonal is NaN too)
/// Keys outside A_i are never read, so a NaN there reaches nothing (flash-attn skips masked blocks the same way,
/// though inside a visited block its kernels multiply a masked probability 0 by v and so would spread a NaN in v).
///
/// Variants (each equals naive to rounding, in double):
/// <code>
/// naive   per row: the scores over A_i materialised, then m, exp(s − m), l, o and lse as above.
///
/// tiled   FlashAttention-2 (Dao 2023, Algorithm 1), per sequence and head: queries in blocks of Br = block_q rows,
///         keys in blocks of Bc = block_k columns (any sizes ≥ 1; the last block may be short). For each query
///         block, m = −∞, l = 0, acc = 0; for each key block that some row's window reaches, in order:
///           S_ij  = s_ij for j ∈ A_i, −∞ elsewhere
///           m_new = max(m, max_j S_ij)
///           P_ij  = exp(S_ij − m_new)
///           l     ← exp(m − m_new) · l + Σ_j P_ij
///           acc   ← exp(m − m_new) · acc + Σ_{j∈A_i} P_ij v_j
///           m     ← m_new
///         then o_i = acc / l and lse_i = m + ln l (o_i = 0, lse_i = −∞ when l = 0). Key blocks outside every row's
///         window are skipped (FA2's n_block_min/n_block_max), and a block with no allowed key for a row leaves
///         that row's m, l, acc as they were (FA2's Check_inf: while m = −∞ there is nothing to rescale). The
///         algorithm, step by step as the paper numbers it, is FlashAttention.cs.
///
/// split   split-KV (flash-decoding) and ring attention: each sequence's keys cut into P = num_splits contiguous
///         parts of ⌈Tk/P⌉ keys (the last parts may be short or empty); part p gives a partial (o_p, lse_p) over
///         A_i ∩ part p by the naive method (an empty part: o_p = 0, lse_p = −∞); the parts merge by
///           lse = ln Σ_p exp(lse_p)     computed as M + ln Σ_p exp(lse_p − M), M = max_p lse_p
///           o   = Σ_p exp(lse_p − lse) · o_p
///         With every lse_p = −∞ the row is empty (o = 0, lse = −∞); an empty part has weight exp(−∞) = 0 and
///         contributes 0·0, so it never makes a NaN (parts past the last key are therefore not computed).
///         <see cref="SoftmaxRow.Merge"/> is the rule on its own.
///
/// decode  flash_attn_with_kvcache: q [B,Tq,Hq,K] (few queries) against k_cache/v_cache, contiguous
///         [B,Tcache,Hkv,K] or paged [num_blocks,page_size,Hkv,K] with block_table [B,max_blocks] (int; key j of
///         batch b is slot j mod page_size of block block_table[b, j / page_size]; any page_size ≥ 1, as
///         flash-attn 3 allows, where flash-attn 2 wants multiples of 256; table entries past the valid length are
///         never read, so they may hold anything); cache_seqlens [B] (int) gives batch b's number of valid keys
///         Tk_b (default: the whole cache). An unpaged cache's batch size must be B. Everything above holds with Tk = Tk_b,
///         so causal is bottom-right relative to cache_seqlens: query i sees keys j ≤ i + Tk_b − Tq. Computed
///         split-KV over the cache (num_splits) and merged, as flash-decoding does; KvCache.cs maps key j to its
///         cache row (the one place where key j is not row j of k). Not supported here: appending
///         new k, v (write them into the cache and raise cache_seqlens), rotary, cache_batch_idx, cache_leftpad.
/// </code>
/// Gradients (the backward pass of every variant): from the cotangents do [B,Tq,Hq,V] and dlse [B,Tq,Hq] (an absent one
/// is zero), the gradients dq, dk, dv (dk_cache, dv_cache for decode) and dalibi_slopes, with P_ij = exp(s_ij − lse_i):
/// <code>
///   D_i      = rowsum(do_i ∘ o_i) − dlse_i
///   dv_j     = Σ_i P_ij do_i,   dP_ij = do_i · v_j
///   dS_ij    = P_ij (dP_ij − D_i)                 softmax's Jacobian, and ∂lse_i/∂s_ij = P_ij
///   dR_ij    = dS_ij · (1 − tanh²(r_ij / c))      through the softcap (r_ij = scale · q_i · k_j); dR = dS without one
///   dq_i     = scale · Σ_j dR_ij k_j,   dk_j = scale · Σ_i dR_ij q_i
///   dslope_h = −Σ_ij dS_ij |d_i − j|              ALiBi (flash-attn takes the slopes as constants and returns none)
/// </code>
/// The sums run over j ∈ A_i only; a mask is a constant (no gradient). GQA: dk and dv of a key/value head sum over its
/// query heads. A row with no allowed key gives zero gradients, whatever its dlse (never NaN). naive is this chain
/// rule row by row (<see cref="NaiveBackward"/>); tiled is FlashAttention-2's backward (FlashAttentionBackward.cs);
/// split and decode take each part's keys from the merged lse and D, as ring attention's backward does, and decode's
/// dk, dv go to the cache rows its keys came from.
///
/// Sources: Vaswani et al. 2017 (the definition); Dao 2023, FlashAttention-2 (the online-softmax recurrence, lse);
/// flash-attn's flash_attn_interface.py docstrings (bottom-right causal, window_size, alibi bias, empty rows,
/// flash_attn_varlen_func, flash_attn_with_kvcache's k_cache/block_table/cache_seqlens), its csrc mask.h and
/// flash_fwd_kernel.h (softcap before mask and ALiBi; slope divided by the softmax scale; the causal ALiBi form);
/// Dao et al. 2023, Flash-Decoding (split-KV and the log-sum-exp merge); PyTorch's scaled_dot_product_attention
/// docs (attn_mask broadcasting, bool True = keep, is_causal top-left).
/// </summary>
public sealed class Softmax : Form
{
    /// <inheritdoc/>
    public override FormContract Contract { get; } = new("softmax", "softmax", "Softmax.cs")
    {
        Variants = ["naive", "tiled", "split", "decode"],
        Inputs =
        [
            SoftmaxSpecs.Q,
            new("k", "B,Tk,Hkv,K", "keys (Hq a multiple of Hkv: GQA/MQA); every variant but decode", Optional: true),
            new("v", "B,Tk,Hkv,V", "values; every variant but decode", Optional: true),
            new("alibi_slopes", "Hq | B,Hq", "ALiBi slopes, [Hq] or [B,Hq]", Optional: true),
            new("mask", "B,Hq,Tq,Tk", "additive (float: −inf drops a key) or bool (bool or 0/1 integers: true keeps a key, or float 0/1 with mask_type=bool); any shape broadcastable to [B,Hq,Tq,Tk] as SDPA's attn_mask",
                Optional: true, AcceptsBool: true, Broadcast: true),
            new("cu_seqlens_q", "N+1", "varlen query boundaries along Tq (B = 1), with cu_seqlens_k", Optional: true, HoldsIndices: true, Varlen: "Tq"),
            new("cu_seqlens_k", "N+1", "varlen key boundaries along Tk (B = 1), with cu_seqlens_q", Optional: true, HoldsIndices: true, Varlen: "Tk"),
            .. KvCache.Inputs,
        ],
        Outputs = SoftmaxSpecs.Outputs,
        Parameters =
        [
            SoftmaxSpecs.Scale, SoftmaxSpecs.Causal, SoftmaxSpecs.CausalAlign, SoftmaxSpecs.WindowLeft, SoftmaxSpecs.WindowRight,
            SoftmaxSpecs.Softcap, SoftmaxSpecs.MaskType, SoftmaxSpecs.BlockQ, SoftmaxSpecs.BlockK, SoftmaxSpecs.NumSplits,
        ],
        Groups = [SoftmaxSpecs.Gqa],
        TimeSymbols = ["Tq", "Tk"],
    };

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Run(string variant, Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        if (!Variants.Contains(variant))
        {
            throw UnknownVariant(variant);
        }
        KvCache.RequireKeysOf(variant, problem);
        var options = SoftmaxOptions.Read(problem);
        return variant switch
        {
            "naive" => Heads.Run(problem, head => Naive(head, options.ScoresOf(head)), "Hq"),
            "tiled" => FlashAttention.Forward(problem, options),
            "split" => Heads.Run(problem, head => Split(head, options.ScoresOf(head), options.NumSplits), "Hq"),
            _ => Decode(problem, options),
        };
    }

    /// <summary>The definition, one (sequence, query head) pair at a time: each query's scores over A_i, then the stable softmax.</summary>
    public static void Naive(Head head, Scores scores)
    {
        ArgumentNullException.ThrowIfNull(head);
        RowBlock o = head.Rows("o");
        Series lse = head.Series("lse");
        for (int i = 0; i < head.T; i++)
        {
            lse[i] = Attend(scores, i, o[i]);
        }
    }

    /// <summary>
    /// Query i: o_i = Σ_{j∈A_i} softmax_j(s_ij) v_j and lse_i = ln Σ_{j∈A_i} exp(s_ij), over the keys of A_i in
    /// [<paramref name="first"/>, <paramref name="end"/>) (all of them but in split's parts).
    /// </summary>
    public static double Attend(Scores scores, int i, Span<double> o, long first = 0, long end = long.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(scores);
        int[] keys = scores.AllowedKeys(i).Where(j => j >= first && j < end).ToArray(); // A_i
        double[] s = Array.ConvertAll(keys, j => scores.Score(i, j));                  // s_ij, materialised
        return SoftmaxRow.Attend(s, keys, scores.Keys, o);                             // max, exp, sum: o_i, lse_i
    }

    /// <summary>
    /// split-KV (flash-decoding, ring attention): the keys cut into P = <paramref name="parts"/> parts of ⌈Tk/P⌉, each
    /// query's partial (o_p, lse_p) over A_i ∩ part p by <see cref="Attend"/>, merged by the log-sum-exp rule. Parts
    /// past the last key are empty (o_p = 0, lse_p = −∞), add exactly nothing to the merge, and are not computed.
    /// </summary>
    public static void Split(Head head, Scores scores, int parts)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(scores);
        RowBlock o = head.Rows("o");
        Series lse = head.Series("lse");
        var split = new SplitParts(scores.Tk, parts, o.Width);
        for (int i = 0; i < head.T; i++)
        {
            lse[i] = split.Attend(scores, i, o[i]);
        }
    }

    /// <summary>decode: split-KV over each batch entry's valid cache keys (KvCache.cs: the cache row of key j).</summary>
    private static IReadOnlyDictionary<string, Tensor> Decode(Problem problem, SoftmaxOptions options)
    {
        KvCache cache = KvCache.Read(problem);
        return Heads.Run(problem, head => Split(head, options.ScoresOf(head, cache.Keys(head)), options.NumSplits), "Hq");
    }

    /// <inheritdoc/>
    public override bool HasGradients => true;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Backward(string variant, Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        if (!Variants.Contains(variant))
        {
            throw UnknownVariant(variant);
        }
        KvCache.RequireKeysOf(variant, problem);
        var options = SoftmaxOptions.Read(problem);
        return variant switch
        {
            "naive" => Heads.Backward(problem, head => NaiveBackward(head, options.ScoresOf(head), KeyValues.GradientsOf(head)), "Hq"),
            "tiled" => FlashAttentionBackward.Softmax(problem, options),
            "split" => Heads.Backward(problem, head => SplitBackward(head, options.ScoresOf(head), options.NumSplits, KeyValues.GradientsOf(head)), "Hq"),
            _ => DecodeBackward(problem, options),
        };
    }

    /// <summary>
    /// The backward pass of the definition, one (sequence, query head) pair at a time: each row's forward replayed
    /// (o_i, lse_i by <see cref="Attend"/>), D_i = rowsum(do_i ∘ o_i) − dlse_i, then the plain chain rule of the row
    /// (<see cref="AttendBackward"/>). dq is written to the pair's rows, dk and dv to <paramref name="gradients"/>
    /// (key j's rows), dslope (ALiBi) to dalibi_slopes. A row with no allowed key has zero gradients, whatever its dlse.
    /// </summary>
    public static void NaiveBackward(Head head, Scores scores, KeyValues gradients)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(scores);
        RowBlock dq = head.Rows("dq");
        RowBlock? dO = head.OptionalRows("do");
        Series? dLse = head.OptionalSeries("dlse");
        var o = new double[scores.Keys.V.Width];
        double dSlope = 0;
        for (int i = 0; i < head.T; i++)
        {
            Array.Clear(o);
            double lse = Attend(scores, i, o);                                        // the forward replayed: o_i, lse_i
            ReadOnlySpan<double> doI = dO is null ? [] : dO[i];
            double d = (dO is null ? 0 : Numerics.VectorKernels.Dot(doI, o)) - (dLse?[i] ?? 0); // D_i = rowsum(do_i ∘ o_i) − dlse_i
            dSlope += AttendBackward(scores, i, lse, d, doI, dq[i], gradients);
        }
        AddSlopeGradient(head, scores, dSlope);
    }

    /// <summary>
    /// The chain rule of query i over the keys of A_i in [<paramref name="first"/>, <paramref name="end"/>), given the
    /// row's lse and D = do_i · o_i − dlse_i (of the whole row: split's parts take the merged ones):
    /// <code>
    ///   P_ij  = exp(s_ij − lse_i)                      j ∈ A_i
    ///   dv_j += P_ij do_i,   dP_ij = do_i · v_j,   dS_ij = P_ij (dP_ij − D_i)      (SoftmaxRow.Backward)
    ///   dR_ij = dS_ij · (1 − tanh²(r_ij / c))          through the softcap (r_ij = scale · q_i · k_j); dR = dS without
    ///   dq_i += scale · Σ_j dR_ij k_j,   dk_j += scale · dR_ij q_i
    ///   dslope += Σ_j dS_ij · (−|d_i − j|)              ALiBi's bias per unit of slope; the mask is a constant
    /// </code>
    /// Returns the row's dslope; dq_i is added to <paramref name="dq"/>, dk and dv to <paramref name="gradients"/>.
    /// </summary>
    public static double AttendBackward(Scores scores, int i, double lse, double d, ReadOnlySpan<double> dO, Span<double> dq,
        KeyValues gradients, long first = 0, long end = long.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(scores);
        ArgumentNullException.ThrowIfNull(gradients);
        int[] keys = scores.AllowedKeys(i).Where(j => j >= first && j < end).ToArray();                       // A_i
        double[] r = Array.ConvertAll(keys, j => scores.Scale * Numerics.VectorKernels.Dot(scores.Q[i], scores.Keys.Key(j))); // r_ij
        double[] s = keys.Select((j, n) => scores.ScoreOf(i, j, r[n])).ToArray();                             // s_ij
        SoftmaxRow.Backward(s, keys, scores.Keys, lse, d, dO, gradients);                                     // s ← dS_ij
        double dSlope = 0;
        for (int n = 0; n < keys.Length; n++)
        {
            dSlope += s[n] * scores.SlopeDerivative(i, keys[n]);
            double dR = scores.Scale * s[n] * scores.SoftcapDerivative(r[n]);
            Numerics.VectorKernels.Axpy(dR, scores.Keys.Key(keys[n]), dq);     // dq_i += scale dR_ij k_j
            Numerics.VectorKernels.Axpy(dR, scores.Q[i], gradients.Key(keys[n])); // dk_j += scale dR_ij q_i
        }
        return dSlope;
    }

    /// <summary>
    /// split's backward, as ring attention's: the forward replayed by parts and merged (o_i, lse_i), then each part's keys
    /// take their gradients from the merged lse_i and D_i alone (P_ij = exp(s_ij − lse_i): the partial lse_p and the
    /// merge weights exp(lse_p − lse) fold into it), part by part, dq_i summed over the parts in order. decode runs it on
    /// each batch entry's cache rows.
    /// </summary>
    public static void SplitBackward(Head head, Scores scores, int parts, KeyValues gradients)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(scores);
        RowBlock dq = head.Rows("dq");
        RowBlock? dO = head.OptionalRows("do");
        Series? dLse = head.OptionalSeries("dlse");
        var split = new SplitParts(scores.Tk, parts, scores.Keys.V.Width);
        var o = new double[scores.Keys.V.Width];
        double dSlope = 0;
        for (int i = 0; i < head.T; i++)
        {
            Array.Clear(o);
            double lse = split.Attend(scores, i, o);
            ReadOnlySpan<double> doI = dO is null ? [] : dO[i];
            double d = (dO is null ? 0 : Numerics.VectorKernels.Dot(doI, o)) - (dLse?[i] ?? 0);
            for (int p = 0; p < split.Used; p++)
            {
                dSlope += AttendBackward(scores, i, lse, d, doI, dq[i], gradients, p * split.Size, (p + 1) * split.Size);
            }
        }
        AddSlopeGradient(head, scores, dSlope);
    }

    /// <summary>
    /// decode's backward: split's on each (batch entry, query head) pair's valid cache keys, into the pair's own dk, dv
    /// rows, then added to the cache rows they came from (KvCache.cs), pair by pair in order: gradients w.r.t. q,
    /// k_cache and v_cache (a cache row no batch entry reads gets 0).
    /// </summary>
    private static IReadOnlyDictionary<string, Tensor> DecodeBackward(Problem problem, SoftmaxOptions options)
    {
        KvCache cache = KvCache.Read(problem);
        int heads = problem["Hq"];
        var own = new KeyValues[problem.Sequences.Count * heads];
        var gradients = Heads.Backward(problem, head =>
        {
            KeyValues keys = cache.Keys(head), pair = KeyValues.Zeros(keys.Count, head["K"], head["V"]);
            SplitBackward(head, options.ScoresOf(head, keys), options.NumSplits, pair);
            own[head.Sequence.Index * heads + head.Index] = pair;
        }, "Hq");
        cache.AddGradients(gradients["dk_cache"], gradients["dv_cache"], own, heads);
        return gradients;
    }

    /// <summary>dalibi_slopes of the pair's head += <paramref name="dSlope"/>, when the call has ALiBi.</summary>
    private static void AddSlopeGradient(Head head, Scores scores, double dSlope)
    {
        if (scores.Slope is not null)
        {
            head.Row("dalibi_slopes")[0] += dSlope;
        }
    }
}

/// <summary>
/// split's parts of one sequence's keys: P parts of ⌈Tk/P⌉ keys; the parts past the last key are empty and not computed.
/// </summary>
internal sealed class SplitParts
{
    private readonly RowBlock _partO;
    private readonly double[] _partLse;

    public SplitParts(int tk, int parts, int width)
    {
        Size = ((long)tk + parts - 1) / parts;
        Used = Size == 0 ? 0 : (int)((tk + Size - 1) / Size); // the parts that hold a key
        _partO = RowBlock.Zeros(Used, width);
        _partLse = new double[Used];
    }

    /// <summary>The keys per part, ⌈Tk/P⌉.</summary>
    public long Size { get; }

    /// <summary>The parts that hold a key.</summary>
    public int Used { get; }

    /// <summary>Query i: each part's (o_p, lse_p) by <see cref="Softmax.Attend"/>, merged into o (added) and the returned lse.</summary>
    public double Attend(Scores scores, int i, Span<double> o)
    {
        for (int p = 0; p < Used; p++)
        {
            _partO[p].Clear();
            _partLse[p] = Softmax.Attend(scores, i, _partO[p], p * Size, (p + 1) * Size);
        }
        return SoftmaxRow.Merge(_partLse, _partO, o);
    }
}

/// <summary>The options of a softmax call, read once from the bound call; the CPU variants and the OpenCL host read the same.</summary>
/// <param name="Scale">The score scale (K^-0.5 unless given).</param>
/// <param name="Causal">Causal masking: window_right = 0.</param>
/// <param name="TopLeft">The diagonal of query i is key i (PyTorch SDPA's is_causal), not i + Tk − Tq (flash-attn's).</param>
/// <param name="WindowLeft">Keys allowed left of the diagonal; −1 = unbounded.</param>
/// <param name="WindowRight">Keys allowed right of the diagonal; −1 = unbounded (0 when causal).</param>
/// <param name="Softcap">c of the softcap c·tanh(s/c); 0 = off.</param>
/// <param name="Mask">The mask, read by mask_type; null = none.</param>
/// <param name="BlockQ">Tiled: the query block Br.</param>
/// <param name="BlockK">Tiled: the key block Bc.</param>
/// <param name="NumSplits">Split and decode: the number of key parts P.</param>
public sealed record SoftmaxOptions(double Scale, bool Causal, bool TopLeft, int WindowLeft, int WindowRight, double Softcap,
    SoftmaxMask? Mask, int BlockQ, int BlockK, int NumSplits)
{
    /// <summary>The options of <paramref name="problem"/>.</summary>
    public static SoftmaxOptions Read(Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        return new(SoftmaxSpecs.ScaleOf(problem), problem.Get(SoftmaxSpecs.Causal), problem.Get(SoftmaxSpecs.CausalAlign) == "top_left",
            problem.Get(SoftmaxSpecs.WindowLeft), problem.Get(SoftmaxSpecs.WindowRight), problem.Get(SoftmaxSpecs.Softcap),
            SoftmaxMask.Read(problem, problem.Get(SoftmaxSpecs.MaskType)),
            problem.Get(SoftmaxSpecs.BlockQ), problem.Get(SoftmaxSpecs.BlockK), problem.Get(SoftmaxSpecs.NumSplits));
    }

    /// <summary>The window of a sequence of <paramref name="tq"/> queries and <paramref name="tk"/> keys.</summary>
    public Window WindowOf(int tq, int tk) => new(WindowLeft, Causal ? 0 : WindowRight, TopLeft ? 0 : tk - tq);

    /// <summary>Whether every score of the call is the plain scaled dot product: no softcap, ALiBi or mask.</summary>
    public bool HasPlainScores(Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        return !(Softcap > 0) && !problem.Has("alibi_slopes") && Mask is null;
    }

    /// <summary>The scores of a (sequence, query head) pair over its k and v.</summary>
    public Scores ScoresOf(Head head) => ScoresOf(head, KeyValues.Of(head));

    /// <summary>The scores of a (sequence, query head) pair over the keys <paramref name="keys"/>.</summary>
    public Scores ScoresOf(Head head, KeyValues keys)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(keys);
        return new Scores(head.Rows("q"), keys, Scale, WindowOf(head.T, keys.Count))
        {
            Softcap = Softcap,
            Slope = head.Problem.Has("alibi_slopes") ? head.Scalar("alibi_slopes") : null,
            Mask = Mask?.Rows(head),
        };
    }
}
