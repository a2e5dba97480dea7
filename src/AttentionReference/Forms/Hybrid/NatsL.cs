using System.Globalization;
using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Hybrid;

/// <summary>
/// NAtS-L (Deng, Winje, Fehring, Lindauer 2026, "Neural Attention Search Linear: Towards Adaptive Token-Level Hybrid
/// Attention Models", arXiv 2602.03681): the sequence is cut into chunks of C tokens and each chunk is routed either
/// to a Gated DeltaNet state or to softmax attention, inside one layer; the kernel op of the authors' code
/// (nats_mixed_attn_gdn), exact, in double.
/// <code>
/// Shapes (layout [B,T,H,D]):
///   q [B,T,H,K]   k [B,T,H,K]   v [B,T,H,V]   g [B,T,H] (log decay ≤ 0)   beta [B,T,H]
///   route [B,NC,H] or [B,NC] (every head alike), NC = ⌈T/C⌉: r_c = 1 softmax, 0 Gated DeltaNet
///   initial_state [B,H,K,V] optional
///   → o_linear [B,T,H,V]   o_softmax [B,T,H,V]   final_state [B,H,K,V]
///
/// Per batch entry and head; chunk c(t) = ⌊t/C⌋; chunk c is complete when (c+1)·C ≤ T; s = scale (K^(-1/2));
/// δ = decay_for_non_gdn_blocks (1 by default, 0 when false).
///   Gated DeltaNet branch: a running state S and the chunk-start state S̄, both initial_state (0 if absent) at t = 0.
///     every token, whatever its chunk's route:
///       S ← exp(g_t) S,   u_t = β_t (v_t − Sᵀk_t),   S ← S + k_t u_tᵀ,   o_linear_t = s · Sᵀq_t
///     at the end of every complete chunk c:
///       r_c = 0:  S̄ ← S                               (the chunk is written into the state)
///       r_c = 1:  S ← exp(δ · Σ_{t∈c} g_t) S̄,  S̄ ← S  (its writes are undone, its decay kept)
///     final_state = S after the last token (after the rule above when the last chunk is complete).
///   Softmax branch: query t sees its own chunk and the earlier softmax-routed chunks,
///     A_t = { j ≤ t : c(j) = c(t) or r_{c(j)} = 1 }   (t ∈ A_t, never empty)
///     o_softmax_t = Σ_{j∈A_t} exp(s q_t·k_j − m_t) v_j / Σ_{j∈A_t} exp(s q_t·k_j − m_t),  m_t = max_{j∈A_t} s q_t·k_j
///
/// Variants:
///   recurrent  the above, token by token (the definition).
///   chunked    per chunk: gated_delta_rule's chunked (WY) form, through its contract, over the chunk's tokens from S̄
///              (one WY chunk), then the end-of-chunk rule; softmax branch: softmax's tiled form, through its contract,
///              causal, with the bool mask "j ∈ A_t".
/// Reductions (tested):
///   every chunk routed to Gated DeltaNet: o_linear, final_state = gated_delta_rule's o, final_state;
///     o_softmax = causal softmax inside each chunk.
///   every chunk routed to softmax: o_softmax = causal softmax; o_linear = gated_delta_rule restarted at every chunk
///     start from exp(δ · Σ_{j&lt;start} g_j) initial_state; final_state = exp(δ · Σ_t g_t) initial_state when C
///     divides T.
///   one chunk that is not complete (C > T): gated_delta_rule and causal softmax, whatever its route.
/// </code>
/// Sources. The paper's text was reachable only as its abstract and first pages (arxiv.org/abs/2602.03681,
/// arxiv.org/html/2602.03681v1, www.emergentmind.com/topics/neural-attention-search-linear-nats-l: chunks of C
/// tokens, a score module of mean pooling and a linear map to two scores, Gated DeltaNet and softmax sharing q, k,
/// v). Every point above is pinned by the authors' code, github.com/automl/NeuralAttentionSearchLinear (named by the
/// paper's write-ups, e.g. jishuzhan.net/article/2022312537937739778), read with the search tool:
/// - src/nats/ops/gated_delta_rule/fused_recurrent.py (fused_recurrent_gated_delta_rule_fwd_nats_kernel): every token
///   runs the Gated DeltaNet step and its output reads the running state; at a chunk's end, b_h is kept when the chunk
///   is a Gated DeltaNet chunk, else replaced by the chunk-start state b_hcur, times exp(Σ g of the chunk) under
///   DECAY_FOR_NON_GDN_BLOCKS; b_hcur ← b_h; the final state is the running b_h.
/// - src/nats/ops/attns/attns.py (parallel_nats_attn_fwd_kernel, COMPUTE_INCOMPLETE_CHUNK_SCORES): keys of earlier
///   chunks are read only from attention chunks; inside the diagonal tile a key is visible causally when its chunk is
///   an attention chunk or the query is in the key's chunk; a row without keys gives 0.
/// - src/nats/ops/mixed_ops/mixed_attn_gdn.py: op index 0 is softmax (OFFSET_ATTN), 1 Gated DeltaNet; the op returns
///   the two outputs (o_gated_delta, o_attn) and the Gated DeltaNet state; scales K^(-1/2) per branch;
///   ops_for_incomplete_chunks 'all' runs both branches on the query's own chunk.
/// - src/nats/ops/gated_delta_rule/chunk_fwd.py (chunk_gated_delta_rule_nats_inference_fwd): a complete last chunk
///   keeps its own route for the state handed on (op_type_last_chunk); the state at the current chunk's start is
///   decayed across softmax chunks.
/// - src/nats/layers/natsl_attn_gdn.py (NeuralAttentionSearchLinearAttnGDN) and experiments/configs/natsl_340M.json,
///   natsl_760M.json: nats_block_size 64, ops_for_incomplete_chunks 'all', decay_for_non_gdn_blocks true,
///   incomplete_block_start_with_ht true; the route is argmax of a linear map of the chunk's mean hidden state
///   (hard_softmax, straight-through; 'gumble' optional); the layer forces the last chunk to both ops in training.
/// Our choices:
/// - route is an input (bool, integer or float); 1 = the softmax op's one-hot entry. A value other than 0 or 1 is bad input. A complete last
///   chunk keeps its route (the inference path's behaviour); the route of an incomplete last chunk has no effect (its
///   decision comes when it completes). <see cref="ScoreRoute"/> computes the route from the score module with given
///   weights, as the layer does: ℓ = w_score · mean_{t∈c} x_t (fla's mean_pooling: the mean over the chunk's tokens,
///   fewer in an incomplete last chunk; nats_layer = Linear(hidden_size, 2·H, bias=False), row 2h + op), and
///   r_c,h = 1 when ℓ_2h ≥ ℓ_2h+1 (argmax of hard_softmax; torch's max takes the first index on a tie, op 0 = softmax).
/// - The two outputs are returned as the kernel op returns them. The layer then RMS-normalises each per attention
///   head, weights them with a softmax over two logits from a linear map of q, sums and multiplies by swish(gate)
///   (src/nats/modules/fused_norm_gate.py, FusedMultiInputRMSNormGated): learned weights, outside the kernel.
/// - One head layout, one q, k, v and one scale s for both branches: the reference's op with num_attn_heads =
///   num_heads and no normalisation. (The layer splits the same projections into num_heads Gated DeltaNet heads and
///   num_attn_heads softmax heads, L2-normalises q, k inside the Gated DeltaNet kernel, RMS-normalises them for
///   softmax, and scales each branch by its own head width^(-1/2); these per-branch inputs are not modelled.)
/// - Only ops_for_incomplete_chunks = 'all' and incomplete_block_start_with_ht = true (the released settings); no
///   decay bias in softmax (use_g_for_attn false); no varlen, no GVA; chunk_size defaults to 64.
/// - final_state continues the sequence exactly when C divides T; otherwise the reference's cache also keeps the
///   chunk-start state S̄, which this form does not return.
/// </summary>
public sealed partial class NatsL : Form
{
    /// <summary>chunk_size: the routing chunk C.</summary>
    public static Parameter<int> ChunkSize { get; } = ParameterSpec.WholeNumber("chunk_size", 64,
        "routing chunk length C ≥ 1 (the reference's nats_block_size; also the chunked variant's chunk)", min: 1);

    /// <summary>scale: s of both branches, K^-0.5 unless given.</summary>
    public static Parameter<double?> Scale { get; } = ParameterSpec.OptionalReal("scale", "K^-0.5", "the scale of both branches");

    /// <summary>decay_for_non_gdn_blocks: δ = 1 (true) or 0.</summary>
    public static Parameter<bool> DecayForNonGdnBlocks { get; } = ParameterSpec.Flag("decay_for_non_gdn_blocks", true,
        "a softmax-routed chunk still decays the Gated DeltaNet state by exp(Σ g)");

    /// <inheritdoc/>
    public override FormContract Contract { get; } = new("nats_l", "hybrid", "NatsL.cs")
    {
        Variants = ["recurrent", "chunked"],
        Inputs =
        [
            Specs.Q,
            Specs.K,
            Specs.V,
            new("g", "B,T,H", "Gated DeltaNet log decay (≤ 0)"),
            new("beta", "B,T,H", "Gated DeltaNet write strength"),
            new("route", "B,NC,H | B,NC", "per chunk: 1 = softmax, 0 = Gated DeltaNet; NC = ⌈T/chunk_size⌉ ([B,NC]: every head alike)", AcceptsBool: true),
            new("initial_state", "B,H,K,V", "Gated DeltaNet state before the first step (zeros if absent)", Optional: true),
        ],
        Outputs =
        [
            new("o_linear", "B,T,H,V", "Gated DeltaNet branch output (the reference's o_gated_delta)"),
            new("o_softmax", "B,T,H,V", "softmax branch output (the reference's o_attn)"),
            new("final_state", "B,H,K,V", "Gated DeltaNet state after the last step"),
        ],
        Parameters = [ChunkSize, Scale, DecayForNonGdnBlocks],
        Derived = [new("NC", ChunkCount)],
    };

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Run(string variant, Problem problem)
    {
        NatsLOptions options = NatsLOptions.Read(problem);
        return variant switch
        {
            "recurrent" => Heads.Run(problem, head => Recurrent(head, options)),
            "chunked" => Chunked(problem, options),
            _ => throw UnknownVariant(variant),
        };
    }

    /// <summary>The definition, token by token: the Gated DeltaNet step, the softmax row over A_t, the end-of-chunk rule.</summary>
    public static void Recurrent(Head head, NatsLOptions options)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(options);
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), oLinear = head.Rows("o_linear"), oSoftmax = head.Rows("o_softmax");
        Series g = head.Series("g"), β = head.Series("beta");
        Span<double> route = head.Row("route"); // r_c: 1 softmax, 0 Gated DeltaNet
        RowBlock S = head.State(), SBar = RowBlock.Zeros(S.Count, S.Width); // the running state and the chunk-start state
        Copy(S, SBar);
        int C = options.ChunkSize;
        var p = new double[S.Width]; // Sᵀk_t
        var u = new double[S.Width]; // u_t
        var visible = new int[head.T];
        for (int t = 0; t < head.T; t++)
        {
            // Gated DeltaNet step: S ← exp(g_t) S,  u_t = β_t (v_t − Sᵀk_t),  S ← S + k_t u_tᵀ,  o_linear_t = s · Sᵀq_t
            double decay = Math.Exp(g[t]);
            Array.Clear(p);
            for (int a = 0; a < S.Count; a++)
            {
                VectorKernels.Scale(decay, S[a]);
                VectorKernels.Axpy(k[t][a], S[a], p);
            }
            for (int c = 0; c < u.Length; c++)
            {
                u[c] = β[t] * (v[t][c] - p[c]);
            }
            for (int a = 0; a < S.Count; a++)
            {
                VectorKernels.Axpy(k[t][a], u, S[a]);
                VectorKernels.Axpy(options.Scale * q[t][a], S[a], oLinear[t]);
            }
            // o_softmax_t: softmax over A_t, the own chunk's keys up to t and those of earlier softmax-routed chunks.
            int chunk = t / C, count = 0;
            for (int j = 0; j <= t; j++)
            {
                if (j / C == chunk || route[j / C] == 1)
                {
                    visible[count++] = j;
                }
            }
            SoftmaxRow.Add(q[t], k, v, options.Scale, visible.AsSpan(0, count), oSoftmax[t]);
            // The end of a complete chunk: a softmax chunk's writes are undone, its decay kept (S ← exp(δ Σ_{j∈c} g_j) S̄);
            // then S̄ ← S.
            if ((t + 1) % C == 0)
            {
                if (route[chunk] == 1)
                {
                    double sum = 0;
                    for (int j = chunk * C; j <= t; j++)
                    {
                        sum += g[j];
                    }
                    double chunkDecay = Math.Exp(options.Delta * sum);
                    for (int a = 0; a < S.Count; a++)
                    {
                        VectorKernels.Multiply(SBar[a], chunkDecay, S[a]);
                    }
                }
                Copy(S, SBar);
            }
        }
    }

    /// <summary>NC = ⌈T/C⌉, the routing chunks: the route must have one entry per chunk (its shape bound NC).</summary>
    private static int ChunkCount(Dims dims, FormParameters parameters)
    {
        int time = dims["T"], size = ChunkSize.Read(parameters);
        int chunks = (int)(((long)time + size - 1) / size);
        return dims["NC"] == chunks ? chunks : throw new InputException(string.Create(CultureInfo.InvariantCulture,
            $"expected NC = ⌈T/chunk_size⌉ = ⌈{time}/{size}⌉ = {chunks} chunks, found {dims["NC"]}"), tensor: "route");
    }

    private static void Copy(RowBlock from, RowBlock to)
    {
        for (int a = 0; a < from.Count; a++)
        {
            from[a].CopyTo(to[a]);
        }
    }

    /// <summary>
    /// gated_delta_rule's chunked form chunk by chunk from the chunk-start state, then the end-of-chunk rule; softmax's
    /// tiled form with the mask of A_t. Both forms through their contracts, over every batch entry and head at once.
    /// </summary>
    private static IReadOnlyDictionary<string, Tensor> Chunked(Problem problem, NatsLOptions options)
    {
        Tensor q = problem.Input("q"), k = problem.Input("k"), v = problem.Input("v"), g = problem.Input("g"), beta = problem.Input("beta");
        var (B, T, H, K, V, C) = (problem["B"], problem["T"], problem["H"], problem["K"], problem["V"], options.ChunkSize);
        string scale = options.Scale.ToString("R", CultureInfo.InvariantCulture);

        // Gated DeltaNet branch: S̄ [B,H,K,V] is the state at the current chunk's start.
        Tensor oLinear = problem.NewOutput("o_linear");
        Tensor sBar = problem.Optional("initial_state")?.Clone() ?? problem.NewOutput("final_state");
        var parameters = new FormParameters(new Dictionary<string, string>
        {
            ["chunk_size"] = C.ToString(CultureInfo.InvariantCulture),
            ["scale"] = scale,
        });
        IForm gatedDeltaRule = FormCatalog.Find("gated_delta_rule");
        foreach (var (start, end) in Chunks.Of(T, C))
        {
            int m = end - start, chunk = start / C;
            var part = gatedDeltaRule.Run("chunked", new Dictionary<string, Tensor>
            {
                ["q"] = TimeSlice(q, start, m), ["k"] = TimeSlice(k, start, m), ["v"] = TimeSlice(v, start, m),
                ["g"] = TimeSlice(g, start, m), ["beta"] = TimeSlice(beta, start, m), ["initial_state"] = sBar,
            }, parameters);
            for (int b = 0; b < B; b++)
            {
                Array.Copy(part["o"].Data, b * m * H * V, oLinear.Data, (b * T + start) * H * V, m * H * V);
            }
            Tensor next = part["final_state"];
            for (int b = 0; b < B && m == C; b++)
            {
                for (int h = 0; h < H; h++)
                {
                    if (options.Routes[b, chunk, h] != 1)
                    {
                        continue;
                    }
                    // A complete softmax chunk: back to S̄, decayed by the chunk's gates when δ = 1.
                    double sum = 0;
                    for (int t = start; t < end; t++)
                    {
                        sum += g[b, t, h];
                    }
                    double chunkDecay = Math.Exp(options.Delta * sum);
                    int offset = (b * H + h) * K * V;
                    for (int i = offset; i < offset + K * V; i++)
                    {
                        next.Data[i] = chunkDecay * sBar.Data[i];
                    }
                }
            }
            sBar = next;
        }

        // Softmax branch: key j is in A_t when it shares t's chunk or its chunk is softmax-routed (causality is the softmax's).
        var mask = new double[B * H * T * T];
        for (int b = 0; b < B; b++)
        {
            for (int h = 0; h < H; h++)
            {
                for (int t = 0; t < T; t++)
                {
                    for (int j = 0; j < T; j++)
                    {
                        mask[((b * H + h) * T + t) * T + j] = j / C == t / C || options.Routes[b, j / C, h] == 1 ? 1 : 0;
                    }
                }
            }
        }
        string block = Math.Min(C, Math.Max(T, 1)).ToString(CultureInfo.InvariantCulture);
        var softmax = FormCatalog.Find("softmax").Run("tiled",
            new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["mask"] = new Tensor([B, H, T, T], mask) },
            new FormParameters(new Dictionary<string, string>
            {
                ["causal"] = "true", ["mask_type"] = "bool", ["scale"] = scale, ["block_q"] = block, ["block_k"] = block,
            }));
        return new Dictionary<string, Tensor> { ["o_linear"] = oLinear, ["o_softmax"] = softmax["o"], ["final_state"] = sBar };
    }

    /// <summary>
    /// The reference layer's score module with given weights: the route [B,NC,H] of hidden states
    /// <paramref name="x"/> [B,T,D] under <paramref name="wScore"/> [2H,D] (nats_layer.weight, row 2h + op, op 0 =
    /// softmax): r_c,h = 1 when (w_score x̄_c)_2h ≥ (w_score x̄_c)_2h+1, x̄_c the mean of chunk c's rows of x.
    /// </summary>
    public static Tensor ScoreRoute(Tensor x, Tensor wScore, int heads, int chunkSize)
    {
        if (chunkSize < 1)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture, $"parameter 'chunk_size': expected an integer ≥ 1, found '{chunkSize}'"));
        }
        var dims = new Dims();
        dims.Bind("x", Dims.RequireFloat("x", x), "B,T,D");
        dims.Bind("w_score", Dims.RequireFloat("w_score", wScore), "O,D");
        if (dims["O"] != 2 * heads)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"expected 2·H = {2 * heads} rows (two scores per head: softmax, Gated DeltaNet), found {dims["O"]}"), tensor: "w_score");
        }
        int B = dims["B"], T = dims["T"], D = dims["D"], NC = (int)(((long)T + chunkSize - 1) / chunkSize);
        var route = Tensor.Zeros(B, NC, heads);
        var mean = new double[D];
        for (int b = 0; b < B; b++)
        {
            foreach (var (start, end) in Chunks.Of(T, chunkSize))
            {
                // x̄_c: the mean over the chunk's tokens.
                int c = start / chunkSize;
                Array.Clear(mean);
                for (int t = start; t < end; t++)
                {
                    for (int d = 0; d < D; d++)
                    {
                        mean[d] += x[b, t, d];
                    }
                }
                for (int d = 0; d < D; d++)
                {
                    mean[d] /= end - start;
                }
                for (int h = 0; h < heads; h++)
                {
                    double softmaxScore = 0, linearScore = 0;
                    for (int d = 0; d < D; d++)
                    {
                        softmaxScore += wScore[2 * h, d] * mean[d];
                        linearScore += wScore[2 * h + 1, d] * mean[d];
                    }
                    route[b, c, h] = softmaxScore >= linearScore ? 1 : 0;
                }
            }
        }
        return route;
    }

    /// <summary>Steps [start, start + length) of a [B,T,...] tensor.</summary>
    private static Tensor TimeSlice(Tensor x, int start, int length)
    {
        int[] shape = x.ShapeArray();
        int batch = shape[0], time = shape[1], inner = x.Length / Math.Max(1, batch * time);
        shape[1] = length;
        var data = new double[batch * length * inner];
        for (int b = 0; b < batch; b++)
        {
            Array.Copy(x.Data, (b * time + start) * inner, data, b * length * inner, length * inner);
        }
        return new Tensor(shape, data);
    }
}

/// <summary>The options of a nats_l call, read once from the bound call; the CPU form and the OpenCL host read the same.</summary>
/// <param name="Scale">The scale s of both branches (K^-0.5 unless given).</param>
/// <param name="ChunkSize">The routing chunk C.</param>
/// <param name="DecayForNonGdnBlocks">The reference's decay_for_non_gdn_blocks.</param>
/// <param name="Routes">The route as [B,NC,H] (a [B,NC] route spread over the heads), every entry 0 or 1.</param>
public sealed record NatsLOptions(double Scale, int ChunkSize, bool DecayForNonGdnBlocks, Tensor Routes)
{
    /// <summary>δ: 1 when a softmax chunk still decays the Gated DeltaNet state, else 0.</summary>
    public double Delta => DecayForNonGdnBlocks ? 1 : 0;

    /// <summary>The options of <paramref name="problem"/>; a route entry other than 0 or 1 is bad input naming route.</summary>
    public static NatsLOptions Read(Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        Tensor route = problem.Input("route");
        if (route.Data.Any(r => r != 0 && r != 1))
        {
            throw new InputException("every entry must be 0 (Gated DeltaNet) or 1 (softmax)", tensor: "route");
        }
        var (B, NC, H) = (problem["B"], problem["NC"], problem["H"]);
        Tensor routes = route.Rank == 3 ? route : new Tensor([B, NC, H], Enumerable.Range(0, B * NC * H).Select(i => route.Data[i / H]).ToArray());
        return new(problem.Get(NatsL.Scale) ?? 1 / Math.Sqrt(problem["K"]), problem.Get(NatsL.ChunkSize), problem.Get(NatsL.DecayForNonGdnBlocks), routes);
    }
}
