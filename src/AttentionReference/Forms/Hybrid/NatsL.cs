using System.Globalization;
using AttentionReference.Forms.Delta;
using AttentionReference.Tensors;
using SoftmaxAttention = AttentionReference.Forms.Softmax.Softmax;

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
///   chunked    per chunk: gated_delta_rule's chunked (WY) form over the chunk's tokens from S̄ (one WY chunk), then
///              the end-of-chunk rule; softmax branch: softmax's tiled form, causal, with the bool mask "j ∈ A_t".
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
/// - route is an input; 1 = the softmax op's one-hot entry. A value other than 0 or 1 is bad input. A complete last
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
public static class NatsL
{
    /// <summary>The definition, token by token.</summary>
    public static NatsLResult Recurrent(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta, Tensor route, int chunkSize, NatsLOptions? options = null)
    {
        options ??= new NatsLOptions();
        var (B, T, H, K, V, routes) = Bind(q, k, v, g, beta, route, chunkSize, options);
        double s = options.Scale ?? 1 / Math.Sqrt(K);
        double δ = options.DecayForNonGdnBlocks ? 1 : 0;
        var oLinear = Tensor.Zeros(B, T, H, V);
        var oSoftmax = Tensor.Zeros(B, T, H, V);
        var finalState = Tensor.Zeros(B, H, K, V);
        System.Threading.Tasks.Parallel.For(0, B * H, pair =>
        {
            int b = pair / H, h = pair % H;
            var slice = new Common.SequenceSlice(b, 0, T, b);
            double[][] Q = GatedLinear.PerHead.Rows(q, slice, h), Kr = GatedLinear.PerHead.Rows(k, slice, h), Vr = GatedLinear.PerHead.Rows(v, slice, h);
            double[] gate = GatedLinear.PerHead.Scalars(g, slice, h), β = GatedLinear.PerHead.Scalars(beta, slice, h);
            double[][] S = GatedLinear.PerHead.InitialState(options.InitialState, b, h, K, V);
            double[][] SBar = S.Select(row => (double[])row.Clone()).ToArray();
            var linearRows = new double[T][];
            var softmaxRows = new double[T][];
            for (int t = 0; t < T; t++)
            {
                // Gated DeltaNet step on the running state: decay, then u = β (v − Sᵀk), S += k uᵀ.
                double decay = Math.Exp(gate[t]);
                var u = new double[V];
                for (int a = 0; a < K; a++)
                {
                    for (int c = 0; c < V; c++)
                    {
                        S[a][c] *= decay;
                    }
                }
                for (int c = 0; c < V; c++)
                {
                    double predicted = 0;
                    for (int a = 0; a < K; a++)
                    {
                        predicted += S[a][c] * Kr[t][a];
                    }
                    u[c] = β[t] * (Vr[t][c] - predicted);
                }
                for (int a = 0; a < K; a++)
                {
                    for (int c = 0; c < V; c++)
                    {
                        S[a][c] += Kr[t][a] * u[c];
                    }
                }
                // o_linear = s Sᵀq.
                var linear = new double[V];
                for (int a = 0; a < K; a++)
                {
                    for (int c = 0; c < V; c++)
                    {
                        linear[c] += s * Q[t][a] * S[a][c];
                    }
                }
                linearRows[t] = linear;

                // o_softmax over A_t: the own chunk and the earlier softmax-routed chunks, shifted by the row's max.
                int chunk = t / chunkSize;
                var visible = Enumerable.Range(0, t + 1).Where(j => j / chunkSize == chunk || routes[b, j / chunkSize, h] == 1).ToArray();
                var score = visible.Select(j => s * Dot(Q[t], Kr[j])).ToArray();
                double m = score.Max(), l = 0;
                var acc = new double[V];
                for (int i = 0; i < score.Length; i++)
                {
                    double p = Math.Exp(score[i] - m);
                    l += p;
                    for (int c = 0; c < V; c++)
                    {
                        acc[c] += p * Vr[visible[i]][c];
                    }
                }
                softmaxRows[t] = acc.Select(x => x / l).ToArray();

                // The end of a complete chunk: keep S (Gated DeltaNet chunk) or go back to S̄, decayed (softmax chunk).
                if ((t + 1) % chunkSize == 0)
                {
                    if (routes[b, chunk, h] == 1)
                    {
                        double sum = 0;
                        for (int j = chunk * chunkSize; j <= t; j++)
                        {
                            sum += gate[j];
                        }
                        double chunkDecay = Math.Exp(δ * sum);
                        for (int a = 0; a < K; a++)
                        {
                            for (int c = 0; c < V; c++)
                            {
                                S[a][c] = chunkDecay * SBar[a][c];
                            }
                        }
                    }
                    for (int a = 0; a < K; a++)
                    {
                        Array.Copy(S[a], SBar[a], V);
                    }
                }
            }
            GatedLinear.PerHead.WriteRows(oLinear, linearRows, slice, h);
            GatedLinear.PerHead.WriteRows(oSoftmax, softmaxRows, slice, h);
            GatedLinear.PerHead.WriteState(finalState, S, b, h);
        });
        return new NatsLResult(oLinear, oSoftmax, finalState);
    }

    /// <summary>gated_delta_rule's chunked form chunk by chunk from the chunk-start state, plus softmax's tiled form with the mask of A_t.</summary>
    public static NatsLResult Chunked(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta, Tensor route, int chunkSize, NatsLOptions? options = null)
    {
        options ??= new NatsLOptions();
        var (B, T, H, K, V, routes) = Bind(q, k, v, g, beta, route, chunkSize, options);
        double δ = options.DecayForNonGdnBlocks ? 1 : 0;

        // Gated DeltaNet branch: S̄ [B,H,K,V] is the state at the current chunk's start.
        var oLinear = Tensor.Zeros(B, T, H, V);
        Tensor sBar = options.InitialState?.Clone() ?? Tensor.Zeros(B, H, K, V);
        var gatedDeltaRule = new GatedDeltaRule();
        var parameters = new FormParameters(new Dictionary<string, string> { ["chunk_size"] = chunkSize.ToString(CultureInfo.InvariantCulture) });
        if (options.Scale is { } scale)
        {
            parameters = parameters.With("scale", scale.ToString("R", CultureInfo.InvariantCulture));
        }
        for (int start = 0; start < T; start += chunkSize)
        {
            int m = Math.Min(chunkSize, T - start), chunk = start / chunkSize;
            var part = gatedDeltaRule.Run("chunked", new Dictionary<string, Tensor>
            {
                ["q"] = TimeSlice(q, start, m), ["k"] = TimeSlice(k, start, m), ["v"] = TimeSlice(v, start, m),
                ["g"] = TimeSlice(g, start, m), ["beta"] = TimeSlice(beta, start, m), ["initial_state"] = sBar,
            }, parameters);
            for (int b = 0; b < B; b++)
            {
                Array.Copy(part["o"].Data, b * m * H * V, oLinear.Data, (b * T + start) * H * V, m * H * V);
            }
            var next = part["final_state"];
            if (m == chunkSize)
            {
                for (int b = 0; b < B; b++)
                {
                    for (int h = 0; h < H; h++)
                    {
                        if (routes[b, chunk, h] != 1)
                        {
                            continue;
                        }
                        // A softmax chunk: back to S̄, decayed by the chunk's gates when δ = 1.
                        double sum = 0;
                        for (int t = start; t < start + m; t++)
                        {
                            sum += g[b, t, h];
                        }
                        double chunkDecay = Math.Exp(δ * sum);
                        int offset = (b * H + h) * K * V;
                        for (int i = offset; i < offset + K * V; i++)
                        {
                            next.Data[i] = chunkDecay * sBar.Data[i];
                        }
                    }
                }
            }
            sBar = next;
        }

        // Softmax branch: key j is in A_t when it shares t's chunk or its chunk is softmax-routed (causality is the softmax's).
        var mask = Tensor.Zeros(B, H, T, T);
        for (int b = 0; b < B; b++)
        {
            for (int h = 0; h < H; h++)
            {
                for (int t = 0; t < T; t++)
                {
                    for (int j = 0; j < T; j++)
                    {
                        mask[b, h, t, j] = j / chunkSize == t / chunkSize || routes[b, j / chunkSize, h] == 1 ? 1 : 0;
                    }
                }
            }
        }
        var softmaxParameters = new Dictionary<string, string>
        {
            ["causal"] = "true",
            ["mask_type"] = "bool",
            ["block_q"] = chunkSize.ToString(CultureInfo.InvariantCulture),
            ["block_k"] = chunkSize.ToString(CultureInfo.InvariantCulture),
        };
        if (options.Scale is { } softmaxScale)
        {
            softmaxParameters["scale"] = softmaxScale.ToString("R", CultureInfo.InvariantCulture);
        }
        var softmax = new SoftmaxAttention().Run("tiled", new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["mask"] = mask },
            new FormParameters(softmaxParameters));
        return new NatsLResult(oLinear, softmax["o"], sBar);
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
            throw new InputException(string.Create(CultureInfo.InvariantCulture, $"parameter 'chunk_size' must be ≥ 1, found {chunkSize}"));
        }
        var dims = new Dims();
        dims.Bind("x", Dims.RequireFloat("x", x), "B,T,D");
        dims.Bind("w_score", Dims.RequireFloat("w_score", wScore), "O,D");
        if (dims["O"] != 2 * heads)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"expected 2·H = {2 * heads} rows (two scores per head: softmax, Gated DeltaNet), found {dims["O"]}"), tensor: "w_score");
        }
        int B = dims["B"], T = dims["T"], D = dims["D"], NC = (T + chunkSize - 1) / chunkSize;
        var route = Tensor.Zeros(B, NC, heads);
        var mean = new double[D];
        for (int b = 0; b < B; b++)
        {
            for (int c = 0; c < NC; c++)
            {
                // x̄_c: the mean over the chunk's tokens.
                int start = c * chunkSize, end = Math.Min(T, start + chunkSize);
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

    /// <summary>
    /// Checks shapes, the route and the chunk size as both variants (and the OpenCL backend) do; returns B, T, H, K, V
    /// and the route as [B,NC,H].
    /// </summary>
    internal static (int B, int T, int H, int K, int V, Tensor Routes) Bind(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta, Tensor route, int chunkSize, NatsLOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (chunkSize < 1)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture, $"parameter 'chunk_size' must be ≥ 1, found {chunkSize}"));
        }
        var dims = new Dims();
        dims.Bind("q", Dims.RequireFloat("q", q), "B,T,H,K");
        dims.Bind("k", Dims.RequireFloat("k", k), "B,T,H,K");
        dims.Bind("v", Dims.RequireFloat("v", v), "B,T,H,V");
        dims.Bind("g", Dims.RequireFloat("g", g), "B,T,H");
        dims.Bind("beta", Dims.RequireFloat("beta", beta), "B,T,H");
        dims.Set("NC", (dims["T"] + chunkSize - 1) / chunkSize);
        ArgumentNullException.ThrowIfNull(route);
        Tensor routes = route;
        if (route.Rank == 2)
        {
            // One route per chunk for every head: spread [B,NC] over H.
            dims.Bind("route", route, "B,NC");
            routes = Tensor.Zeros(dims["B"], dims["NC"], dims["H"]);
            for (int i = 0; i < routes.Length; i++)
            {
                routes.Data[i] = route.Data[i / dims["H"]];
            }
        }
        else
        {
            dims.Bind("route", route, "B,NC,H");
        }
        if (route.Data.Any(r => r != 0 && r != 1))
        {
            throw new InputException("every entry must be 0 (Gated DeltaNet) or 1 (softmax)", tensor: "route");
        }
        if (options.InitialState is not null)
        {
            dims.Bind("initial_state", Dims.RequireFloat("initial_state", options.InitialState), "B,H,K,V");
        }
        return (dims["B"], dims["T"], dims["H"], dims["K"], dims["V"], routes);
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

    private static double Dot(ReadOnlySpan<double> x, ReadOnlySpan<double> y)
    {
        double sum = 0;
        for (int a = 0; a < x.Length; a++)
        {
            sum += x[a] * y[a];
        }
        return sum;
    }
}

/// <summary>The options of <see cref="NatsL"/>.</summary>
public sealed record NatsLOptions
{
    /// <summary>The scale of both branches; null means K^(-1/2).</summary>
    public double? Scale { get; init; }

    /// <summary>The Gated DeltaNet state before the first step, [B,H,K,V]; null means zeros.</summary>
    public Tensor? InitialState { get; init; }

    /// <summary>
    /// The reference's decay_for_non_gdn_blocks: a softmax-routed chunk still decays the Gated DeltaNet state by
    /// exp(Σ g over the chunk) (true, the released setting), or leaves it as it was (false).
    /// </summary>
    public bool DecayForNonGdnBlocks { get; init; } = true;
}

/// <summary>The outputs of <see cref="NatsL"/>: the two branches' outputs [B,T,H,V] and the Gated DeltaNet state [B,H,K,V].</summary>
public sealed record NatsLResult(Tensor OLinear, Tensor OSoftmax, Tensor FinalState);
