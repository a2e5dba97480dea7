using System.Globalization;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Softmax;

/// <summary>
/// Sparse softmax attention, exact, in double: softmax attention in which each query sees only the keys a sparsity
/// pattern allows. Three patterns: a given block layout, Longformer's window plus global tokens, and BigBird's window
/// plus global plus random blocks.
/// <code>
/// Shapes (layout [B,T,H,D], as flash-attn):
///   q [B,Tq,Hq,K]   k [B,Tk,Hkv,K]   v [B,Tk,Hkv,V]   →   o [B,Tq,Hq,V]   lse [B,Tq,Hq]
///   block_mask [Hq,Nq,Nk] or [1,Nq,Nk] (0/1, int32/int64; [1,…] is shared by every head)
///       Nq = ceil(Tq / block_q), Nk = ceil(Tk / block_k)
///   global_tokens [G] (int32/int64 token indices, each in [0, Tk); repeats are harmless)
///   Hq is a multiple of Hkv (GQA/MQA): query head h reads key/value head h / (Hq/Hkv).
///
/// For each batch b, query head h and query position i, with d_i = i + Tk − Tq the query's own key position
/// (flash-attn's bottom-right alignment; d_i = i for self-attention):
///   A_i   = { j : allowed_h(i, j) }  ∩  { j ≤ d_i  if causal }
///   s_ij  = scale · q_i · k_j                         scale = K^(-1/2) unless given
///   m_i   = max_{j∈A_i} s_ij
///   l_i   = Σ_{j∈A_i} exp(s_ij − m_i)
///   o_i   = Σ_{j∈A_i} exp(s_ij − m_i) v_j / l_i
///   lse_i = m_i + ln l_i                              natural log, as flash-attn's softmax_lse
///
/// Patterns (variants):
///   block       allowed_h(i, j) = M[h, ⌊i/Bq⌋, ⌊j/Bk⌋] ≠ 0                       M = block_mask, Bq = block_q, Bk = block_k
///   longformer  allowed(i, j)   = |j − d_i| ≤ w  ∨  d_i ∈ G  ∨  j ∈ G           w = window (tokens, each side), G = global_tokens
///   bigbird     allowed_h(i, j) = |⌊i/B⌋ − ⌊j/B⌋| ≤ w_b  ∨  i ∈ G  ∨  j ∈ G  ∨  R[h, ⌊i/B⌋, ⌊j/B⌋] ≠ 0
///                                 B = block_q = block_k, w_b = window_blocks (blocks, each side), R = block_mask
/// </code>
/// Law. Each pattern is softmax attention with the dense mask allowed_h(i, j) (∧ causal): masked scores set to −∞,
/// then a stable softmax. Disallowed keys are never read, so a NaN in one of them does not reach o.
///
/// Longformer (Beltagy, Peters and Cohan 2020, "Longformer: The Long-Document Transformer", §3.1). The paper's
/// window of size w means w/2 tokens on each side (Hugging Face's <c>attention_window</c> is that total and must be
/// even); our <c>window</c> is the one-sided count, so Hugging Face's attention_window = 2·window. Global attention
/// is symmetric, as in the paper: a global token attends to every token and every token attends to it. Choices where
/// the paper leaves one open: the paper (and Hugging Face) compute global attention with separate projections
/// Q_g, K_g, V_g; at kernel level there is one q, k, v, so window and global scores here use the same projections
/// (one score per pair). Dilation is not supported. For Tq ≠ Tk the window is centred on d_i and a
/// query is global when its own key position d_i is in G (G holds key positions; for self-attention they are the
/// token indices). The autoregressive (causal) Longformer is this pattern with <c>causal=true</c>.
///
/// BigBird (Zaheer et al. 2020, "Big Bird: Transformers for Longer Sequences", §2 and App. D, the blocked
/// implementation, as in google-research/bigbird and Hugging Face's BigBirdBlockSparseAttention): tokens are grouped
/// in blocks of size B; a query block attends to the w_b blocks on each side of its own (the paper's 3-block window
/// is w_b = 1, our default), to the global tokens, and to r random blocks; global tokens attend everywhere (BIGBIRD-
/// ITC: the global tokens are existing tokens). Choices: the window is counted in blocks, as the blocked
/// implementation does (not in tokens as in the paper's §2 graph); the random blocks are an input (block_mask, per
/// head or shared) so the call is deterministic, and random attention is one-way (query block → key block), as
/// Hugging Face's rand_attn is; the global tokens are given as token indices — BigBird-ITC's default, the first and
/// last block global, is global_tokens = {0 … B−1} ∪ {T−B … T−1}. BigBird is self-attention: this pattern requires
/// Tq = Tk and block_q = block_k.
///
/// Empty rows. A query with no allowed key (an all-zero row of the layout, or causal with Tq > Tk) gives o_i = 0 and
/// lse_i = −∞, as flash-attn does (PyTorch SDPA with a boolean mask gives NaN there instead).
///
/// Sources: the two papers above; for the <c>block</c> pattern, the 0/1 layout [H, Tq/Bq, Tk/Bk] that Triton's and
/// xformers' block-sparse attention take (the [1, …] form shared by all heads is our convenience); flash-attn ≥ 2.1
/// for the bottom-right causal alignment. Every variant computes row by row: the allowed keys are gathered, their scores
/// materialised, then max, exp, sum, as <see cref="Softmax.Naive"/> does.
/// </summary>
public static class Sparse
{
    /// <summary>The <c>block</c> pattern: query block ⌊i/Bq⌋ sees key block ⌊j/Bk⌋ where the layout holds 1.</summary>
    public static SparseResult Block(Tensor q, Tensor k, Tensor v, Tensor blockMask, SparseOptions? options = null)
    {
        options ??= new SparseOptions();
        var problem = SparseProblem.Bind(q, k, v, options);
        var layout = BlockLayout.Bind("block_mask", blockMask, problem, options);
        return Attend(problem, (h, i, j) => layout.Allows(h, i / options.BlockQ, j / options.BlockK));
    }

    /// <summary>The <c>longformer</c> pattern: a window of w keys each side of d_i, plus global tokens.</summary>
    public static SparseResult Longformer(Tensor q, Tensor k, Tensor v, Tensor? globalTokens, SparseOptions? options = null)
    {
        options ??= new SparseOptions();
        var problem = SparseProblem.Bind(q, k, v, options);
        if (options.Window < 0)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture, $"window must be ≥ 0 (keys on each side), found {options.Window}"));
        }
        bool[] global = GlobalTokens(globalTokens, problem.Tk);
        int offset = problem.Tk - problem.Tq, w = options.Window;
        return Attend(problem, (_, i, j) =>
        {
            int d = i + offset;
            return Math.Abs(j - d) <= w || (d >= 0 && global[d]) || global[j];
        });
    }

    /// <summary>The <c>bigbird</c> pattern: w_b blocks each side, global tokens, and the given random blocks.</summary>
    public static SparseResult BigBird(Tensor q, Tensor k, Tensor v, Tensor randomBlocks, Tensor? globalTokens, SparseOptions? options = null)
    {
        options ??= new SparseOptions();
        var problem = SparseProblem.Bind(q, k, v, options);
        if (problem.Tq != problem.Tk || options.BlockQ != options.BlockK)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"bigbird is self-attention with one block size: needs Tq = Tk and block_q = block_k, found Tq = {problem.Tq}, Tk = {problem.Tk}, block_q = {options.BlockQ}, block_k = {options.BlockK}"));
        }
        if (options.WindowBlocks < 0)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture, $"window_blocks must be ≥ 0 (blocks on each side), found {options.WindowBlocks}"));
        }
        var random = BlockLayout.Bind("block_mask", randomBlocks, problem, options);
        bool[] global = GlobalTokens(globalTokens, problem.Tk);
        int size = options.BlockQ, wb = options.WindowBlocks;
        return Attend(problem, (h, i, j) =>
        {
            int qb = i / size, kb = j / size;
            return Math.Abs(qb - kb) <= wb || global[i] || global[j] || random.Allows(h, qb, kb);
        });
    }

    /// <summary>
    /// The shared core: for each row, the keys the pattern allows (and causal allows), their scores, then the stable
    /// softmax. <paramref name="allowed"/> takes (query head, query position, key position).
    /// </summary>
    private static SparseResult Attend(SparseProblem problem, Func<int, int, int, bool> allowed)
    {
        var (batch, tq, tk, hq, dv) = (problem.Batch, problem.Tq, problem.Tk, problem.Hq, problem.Dv);
        var o = Tensor.Zeros(batch, tq, hq, dv);
        var lse = Tensor.Zeros(batch, tq, hq);
        int offset = tk - tq;

        // One task per (b, i, h) row, computed start to end by one thread: the result does not depend on the thread count.
        Parallel.For(0, batch * tq * hq, () => (Keys: new int[tk], Scores: new double[tk]), (row, _, scratch) =>
        {
            int h = row % hq, i = row / hq % tq, b = row / hq / tq;
            int count = 0;
            for (int j = 0; j < tk; j++)
            {
                if ((!problem.Causal || j <= i + offset) && allowed(h, i, j))
                {
                    scratch.Keys[count++] = j;
                }
            }
            Span<double> oRow = o.Data.AsSpan(((b * tq + i) * hq + h) * dv, dv);
            if (count == 0)
            {
                lse.Data[row] = double.NegativeInfinity; // no allowed key: o = 0, lse = −∞
                return scratch;
            }

            Span<double> s = scratch.Scores.AsSpan(0, count);
            for (int n = 0; n < count; n++)
            {
                s[n] = problem.Scale * VectorKernels.Dot(problem.QueryRow(b, h, i), problem.KeyRow(b, h, scratch.Keys[n]));
            }
            double m = VectorKernels.Max(s);
            double l = VectorKernels.ExpShiftedInPlace(s, m); // s now holds exp(s − m)
            for (int n = 0; n < count; n++)
            {
                VectorKernels.Axpy(s[n], problem.ValueRow(b, h, scratch.Keys[n]), oRow);
            }
            VectorKernels.Scale(1 / l, oRow);
            lse.Data[row] = m + Math.Log(l);
            return scratch;
        }, _ => { });

        return new SparseResult(o, lse);
    }

    /// <summary>global_tokens [G] as a membership table over the Tk key positions (all false when absent).</summary>
    private static bool[] GlobalTokens(Tensor? globalTokens, int tk)
    {
        var global = new bool[tk];
        if (globalTokens is null)
        {
            return global;
        }
        Dims.RequireInteger("global_tokens", globalTokens);
        if (globalTokens.Rank != 1)
        {
            throw new InputException($"expected shape [G], found {globalTokens.ShapeString}", tensor: "global_tokens");
        }
        foreach (double index in globalTokens.Data)
        {
            if (!(index >= 0 && index < tk))
            {
                throw new InputException(string.Create(CultureInfo.InvariantCulture,
                    $"token index {index} is outside [0, Tk) = [0, {tk})"), tensor: "global_tokens");
            }
            global[(int)index] = true;
        }
        return global;
    }

    /// <summary>The validated q, k, v of one call, with the row accessors every pattern shares.</summary>
    private sealed class SparseProblem
    {
        private readonly Tensor _q, _k, _v;
        private readonly int _hkv, _groupSize;

        private SparseProblem(Tensor q, Tensor k, Tensor v, Dims dims, SparseOptions options)
        {
            (_q, _k, _v) = (q, k, v);
            (Batch, Tq, Tk, Hq, Dk, Dv) = (dims["B"], dims["Tq"], dims["Tk"], dims["Hq"], dims["K"], dims["V"]);
            _hkv = dims["Hkv"];
            _groupSize = _hkv == 0 ? 1 : Hq / _hkv;
            Scale = options.Scale ?? 1 / Math.Sqrt(Dk);
            Causal = options.Causal;
        }

        public int Batch { get; }
        public int Tq { get; }
        public int Tk { get; }
        public int Hq { get; }
        public int Dk { get; }
        public int Dv { get; }
        public double Scale { get; }
        public bool Causal { get; }

        public static SparseProblem Bind(Tensor q, Tensor k, Tensor v, SparseOptions options)
        {
            var dims = new Dims();
            dims.Bind("q", Dims.RequireFloat("q", q), "B,Tq,Hq,K");
            dims.Bind("k", Dims.RequireFloat("k", k), "B,Tk,Hkv,K");
            dims.Bind("v", Dims.RequireFloat("v", v), "B,Tk,Hkv,V");
            if (dims["Hkv"] == 0 ? dims["Hq"] != 0 : dims["Hq"] % dims["Hkv"] != 0)
            {
                throw new InputException(string.Create(CultureInfo.InvariantCulture,
                    $"the number of key/value heads Hkv = {dims["Hkv"]} must divide the number of query heads Hq = {dims["Hq"]} (GQA/MQA)"), tensor: "k");
            }
            if (options.BlockQ < 1 || options.BlockK < 1)
            {
                throw new InputException(string.Create(CultureInfo.InvariantCulture,
                    $"block sizes must be ≥ 1, found block_q = {options.BlockQ}, block_k = {options.BlockK}"));
            }
            return new SparseProblem(q, k, v, dims, options);
        }

        public ReadOnlySpan<double> QueryRow(int b, int h, int i) => _q.Data.AsSpan(((b * Tq + i) * Hq + h) * Dk, Dk);

        public ReadOnlySpan<double> KeyRow(int b, int h, int j) => _k.Data.AsSpan(((b * Tk + j) * _hkv + h / _groupSize) * Dk, Dk);

        public ReadOnlySpan<double> ValueRow(int b, int h, int j) => _v.Data.AsSpan(((b * Tk + j) * _hkv + h / _groupSize) * Dv, Dv);
    }

    /// <summary>A 0/1 block layout [Hq or 1, ceil(Tq/Bq), ceil(Tk/Bk)], checked once.</summary>
    private sealed class BlockLayout
    {
        private readonly double[] _cells;
        private readonly int _heads, _rows, _columns;

        private BlockLayout(Tensor layout)
        {
            _cells = layout.Data;
            (_heads, _rows, _columns) = (layout.Dim(0), layout.Dim(1), layout.Dim(2));
        }

        public static BlockLayout Bind(string name, Tensor layout, SparseProblem problem, SparseOptions options)
        {
            if (layout.DType != DType.Bool)
            {
                Dims.RequireInteger(name, layout); // a layout is bool or 0/1 integers, never floats
            }
            int rows = (problem.Tq + options.BlockQ - 1) / options.BlockQ, columns = (problem.Tk + options.BlockK - 1) / options.BlockK;
            if (layout.Rank != 3 || (layout.Dim(0) != problem.Hq && layout.Dim(0) != 1) || layout.Dim(1) != rows || layout.Dim(2) != columns)
            {
                throw new InputException(string.Create(CultureInfo.InvariantCulture,
                    $"expected shape [Hq,Nq,Nk] = [{problem.Hq},{rows},{columns}] or [1,{rows},{columns}] (Nq = ceil(Tq/block_q), Nk = ceil(Tk/block_k)), found {layout.ShapeString}"),
                    tensor: name);
            }
            foreach (double cell in layout.Data)
            {
                if (cell is not (0 or 1))
                {
                    throw new InputException(string.Create(CultureInfo.InvariantCulture, $"expected 0/1 entries, found {cell}"), tensor: name);
                }
            }
            return new BlockLayout(layout);
        }

        /// <summary>Whether query head h's block row qb sees block column kb.</summary>
        public bool Allows(int h, int qb, int kb) => _cells[((_heads == 1 ? 0 : h) * _rows + qb) * _columns + kb] != 0;
    }
}

/// <summary>The options of <see cref="Sparse"/>; each pattern reads the ones it names.</summary>
public sealed record SparseOptions
{
    /// <summary>Score scale; null means K^(-1/2).</summary>
    public double? Scale { get; init; }

    /// <summary>Causal masking on top of the pattern (j ≤ i + Tk − Tq, bottom-right as flash-attn).</summary>
    public bool Causal { get; init; }

    /// <summary>Query block size Bq of the layout (block, bigbird).</summary>
    public int BlockQ { get; init; } = 64;

    /// <summary>Key block size Bk of the layout (block, bigbird).</summary>
    public int BlockK { get; init; } = 64;

    /// <summary>Longformer: keys allowed on each side of the diagonal (Hugging Face's attention_window / 2).</summary>
    public int Window { get; init; } = 256;

    /// <summary>BigBird: neighbouring blocks on each side (1 = the paper's 3-block window).</summary>
    public int WindowBlocks { get; init; } = 1;
}

/// <summary>Outputs of sparse attention: o [B,Tq,Hq,V] and lse [B,Tq,Hq].</summary>
public sealed record SparseResult(Tensor O, Tensor Lse);
