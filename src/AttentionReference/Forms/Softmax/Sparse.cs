using System.Globalization;
using AttentionReference.Forms.Common;
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
/// Gradients: dq, dk and dv, softmax's (<see cref="Softmax.NaiveBackward"/>) through the pattern's keys only; block_mask
/// and global_tokens are constants.
///
/// Empty rows. A query with no allowed key (an all-zero row of the layout, or causal with Tq > Tk) gives o_i = 0 and
/// lse_i = −∞, as flash-attn does (PyTorch SDPA with a boolean mask gives NaN there instead).
///
/// Sources: the two papers above; for the <c>block</c> pattern, the 0/1 layout [H, Tq/Bq, Tk/Bk] that Triton's and
/// xformers' block-sparse attention take (the [1, …] form shared by all heads is our convenience); flash-attn ≥ 2.1
/// for the bottom-right causal alignment. Every pattern runs softmax's definition (<see cref="Softmax.Naive"/>) with the
/// pattern as a sparse mask on A_i (Scores.cs): the allowed keys gathered, their scores materialised, then max, exp, sum.
/// </summary>
public sealed class Sparse : Form
{
    /// <inheritdoc/>
    public override FormContract Contract { get; } = new("sparse", "softmax", "Sparse.cs")
    {
        Variants = ["block", "longformer", "bigbird"],
        Inputs =
        [
            SoftmaxSpecs.Q, SoftmaxSpecs.K, SoftmaxSpecs.V,
            new("block_mask", "Hq,Nq,Nk", "0/1 block layout, [Hq,…] or [1,…] shared by all heads; Nq = ceil(Tq/block_q), Nk = ceil(Tk/block_k); block: the pattern, bigbird: the random blocks",
                Optional: true, HoldsIndices: true, AcceptsBool: true, Broadcast: true),
            new("global_tokens", "G", "global token indices in [0, Tk) (longformer, bigbird)", Optional: true, HoldsIndices: true),
        ],
        Outputs = SoftmaxSpecs.Outputs,
        Parameters = [SoftmaxSpecs.Scale, SoftmaxSpecs.Causal, SoftmaxSpecs.LayoutBlockQ, SoftmaxSpecs.LayoutBlockK, SoftmaxSpecs.Window, SoftmaxSpecs.WindowBlocks],
        Groups = [SoftmaxSpecs.Gqa],
    };

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Run(string variant, Problem problem)
    {
        var options = SparseOptions.Read(problem);
        Pattern allowed = variant switch
        {
            "block" => Block(problem, options),
            "longformer" => Longformer(problem, options),
            "bigbird" => BigBird(problem, options),
            _ => throw UnknownVariant(variant),
        };
        return Heads.Run(problem, head => Softmax.Naive(head, options.ScoresOf(head, allowed)), "Hq");
    }

    /// <summary>block: allowed_h(i, j) = M[h, ⌊i/Bq⌋, ⌊j/Bk⌋] ≠ 0.</summary>
    public static Pattern Block(Problem problem, SparseOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var layout = BlockLayout.Read(problem, options, "block");
        return (h, i, j) => layout.Allows(h, i / options.BlockQ, j / options.BlockK);
    }

    /// <summary>longformer: allowed(i, j) = |j − d_i| ≤ w ∨ d_i ∈ G ∨ j ∈ G, with d_i = i + Tk − Tq.</summary>
    public static Pattern Longformer(Problem problem, SparseOptions options)
    {
        ArgumentNullException.ThrowIfNull(problem);
        ArgumentNullException.ThrowIfNull(options);
        bool[] global = GlobalTokens(problem);
        int offset = problem["Tk"] - problem["Tq"], w = options.WindowKeys;
        return (_, i, j) =>
        {
            int d = i + offset;
            return Math.Abs(j - d) <= w || (d >= 0 && global[d]) || global[j];
        };
    }

    /// <summary>bigbird: allowed_h(i, j) = |⌊i/B⌋ − ⌊j/B⌋| ≤ w_b ∨ i ∈ G ∨ j ∈ G ∨ R[h, ⌊i/B⌋, ⌊j/B⌋] ≠ 0.</summary>
    public static Pattern BigBird(Problem problem, SparseOptions options)
    {
        ArgumentNullException.ThrowIfNull(problem);
        ArgumentNullException.ThrowIfNull(options);
        var (tq, tk) = (problem["Tq"], problem["Tk"]);
        if (tq != tk || options.BlockQ != options.BlockK)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"bigbird is self-attention with one block size: needs Tq = Tk and block_q = block_k, found Tq = {tq}, Tk = {tk}, block_q = {options.BlockQ}, block_k = {options.BlockK}"));
        }
        var random = BlockLayout.Read(problem, options, "bigbird");
        bool[] global = GlobalTokens(problem);
        int size = options.BlockQ, wb = options.WindowBlocks;
        return (h, i, j) =>
        {
            int qb = i / size, kb = j / size;
            return Math.Abs(qb - kb) <= wb || global[i] || global[j] || random.Allows(h, qb, kb);
        };
    }

    /// <inheritdoc/>
    public override bool HasGradients => true;

    /// <summary>
    /// Every pattern's backward is softmax's definition's (<see cref="Softmax.NaiveBackward"/>) under the pattern: the
    /// gradients dq, dk, dv flow through the allowed keys only; the layout and the global tokens are constants.
    /// </summary>
    public override IReadOnlyDictionary<string, Tensor> Backward(string variant, Problem problem)
    {
        var options = SparseOptions.Read(problem);
        Pattern allowed = PatternOf(variant, problem, options);
        return Heads.Backward(problem, head => Softmax.NaiveBackward(head, options.ScoresOf(head, allowed), KeyValues.GradientsOf(head)), "Hq");
    }

    /// <summary>The pattern of <paramref name="variant"/>, as <see cref="Run"/> picks it (for the backward; Run spells it out where the definition is read).</summary>
    private Pattern PatternOf(string variant, Problem problem, SparseOptions options) => variant switch
    {
        "block" => Block(problem, options),
        "longformer" => Longformer(problem, options),
        "bigbird" => BigBird(problem, options),
        _ => throw UnknownVariant(variant),
    };

    /// <summary>global_tokens [G] as a membership table over the Tk key positions (all false when absent).</summary>
    internal static bool[] GlobalTokens(Problem problem)
    {
        int tk = problem["Tk"];
        var global = new bool[tk];
        foreach (double index in problem.Optional("global_tokens")?.Data ?? [])
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
}

/// <summary>A sparsity pattern: whether query i of head h may read key j (before causal masking).</summary>
public delegate bool Pattern(int h, int i, int j);

/// <summary>The options of a sparse call, read once from the bound call; the CPU form and the OpenCL host read the same.</summary>
/// <param name="Scale">The score scale (K^-0.5 unless given).</param>
/// <param name="Causal">Causal masking on top of the pattern (j ≤ i + Tk − Tq, bottom-right as flash-attn).</param>
/// <param name="BlockQ">Query block size Bq of the layout (block, bigbird).</param>
/// <param name="BlockK">Key block size Bk of the layout (block, bigbird).</param>
/// <param name="WindowKeys">Longformer: keys allowed on each side of the diagonal (Hugging Face's attention_window / 2).</param>
/// <param name="WindowBlocks">BigBird: neighbouring blocks on each side (1 = the paper's 3-block window).</param>
public sealed record SparseOptions(double Scale, bool Causal, int BlockQ, int BlockK, int WindowKeys, int WindowBlocks)
{
    /// <summary>The options of <paramref name="problem"/>.</summary>
    public static SparseOptions Read(Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        return new(SoftmaxSpecs.ScaleOf(problem), problem.Get(SoftmaxSpecs.Causal), problem.Get(SoftmaxSpecs.LayoutBlockQ),
            problem.Get(SoftmaxSpecs.LayoutBlockK), problem.Get(SoftmaxSpecs.Window), problem.Get(SoftmaxSpecs.WindowBlocks));
    }

    /// <summary>The scores of a (batch entry, query head) pair: the plain scaled dot product, A_i the pattern's keys (∧ causal).</summary>
    public Scores ScoresOf(Head head, Pattern allowed)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(allowed);
        var keys = KeyValues.Of(head);
        int h = head.Index;
        return new Scores(head.Rows("q"), keys, Scale, Causal ? Window.Causal(head.T, keys.Count) : Window.Full)
        {
            Pattern = (i, j) => allowed(h, i, j),
        };
    }
}

/// <summary>A 0/1 block layout [Hq or 1, ceil(Tq/Bq), ceil(Tk/Bk)], checked once.</summary>
internal sealed class BlockLayout
{
    private BlockLayout(Tensor layout) => (Cells, Heads, Rows, Columns) = (layout.Data, layout.Dim(0), layout.Dim(1), layout.Dim(2));

    /// <summary>The cells, [Heads, Rows, Columns] row-major.</summary>
    public double[] Cells { get; }

    /// <summary>Hq, or 1 for a layout shared by all heads.</summary>
    public int Heads { get; }

    public int Rows { get; }

    public int Columns { get; }

    /// <summary>block_mask of a bound call, which <paramref name="variant"/> needs: bool or 0/1 integers, of the layout's shape.</summary>
    public static BlockLayout Read(Problem problem, SparseOptions options, string variant)
    {
        Tensor layout = problem.Optional("block_mask")
            ?? throw new InputException($"missing: the {variant} variant needs it (expected shape [Hq,Nq,Nk] or [1,Nq,Nk])", tensor: "block_mask");
        if (layout.DType is not (DType.Bool or DType.I32 or DType.I64))
        {
            throw new InputException($"expected an integer tensor (i32 or i64), found {layout.DType.ShortName()}", tensor: "block_mask"); // a layout is never floats
        }
        int hq = problem["Hq"], rows = (problem["Tq"] + options.BlockQ - 1) / options.BlockQ, columns = (problem["Tk"] + options.BlockK - 1) / options.BlockK;
        if (layout.Rank != 3 || (layout.Dim(0) != hq && layout.Dim(0) != 1) || layout.Dim(1) != rows || layout.Dim(2) != columns)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"expected shape [Hq,Nq,Nk] = [{hq},{rows},{columns}] or [1,{rows},{columns}] (Nq = ceil(Tq/block_q), Nk = ceil(Tk/block_k)), found {layout.ShapeString}"),
                tensor: "block_mask");
        }
        foreach (double cell in layout.Data)
        {
            if (cell is not (0 or 1))
            {
                throw new InputException(string.Create(CultureInfo.InvariantCulture, $"expected 0/1 entries, found {cell}"), tensor: "block_mask");
            }
        }
        return new BlockLayout(layout);
    }

    /// <summary>Whether query head h's block row qb sees block column kb.</summary>
    public bool Allows(int h, int qb, int kb) => Cells[((Heads == 1 ? 0 : h) * Rows + qb) * Columns + kb] != 0;
}
