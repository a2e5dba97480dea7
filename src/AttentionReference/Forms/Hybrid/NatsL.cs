using System.Globalization;
using AttentionReference.Forms.Delta;
using AttentionReference.Forms.Softmax;
using AttentionReference.Tensors;
using SoftmaxAttention = AttentionReference.Forms.Softmax.Softmax;

namespace AttentionReference.Forms.Hybrid;

/// <summary>
/// NAtS-L (Deng, Winje, Fehring, Lindauer 2026, "Neural Attention Search Linear: Towards Adaptive Token-Level Hybrid
/// Attention Models", arXiv 2602.03681): in one layer, chunks of C tokens routed either to a Gated DeltaNet state or
/// kept as softmax keys and values. In double. UNPINNED: see the list of choices below.
/// <code>
/// Shapes (layout [B,T,H,D]):
///   q [B,T,H,K]   k [B,T,H,K]   v [B,T,H,V]   g [B,T,H] (log decay ≤ 0)   beta [B,T,H]
///   route [B,NC,H] or [B,NC] (the same for every head), NC = ⌈T/C⌉: 1 = the chunk's tokens are softmax keys,
///   0 = they go into the Gated DeltaNet state
///   initial_state [B,H,K,V] optional   →   o [B,T,H,V]   final_state [B,H,K,V]
///
/// Per batch entry and head, chunk c(t) = ⌊t/C⌋, r_t = route[b, c(t), h], s = scale (K^(-1/2)):
///   linear branch (Gated DeltaNet, gated_delta_rule's recurrence, over the linear-routed tokens only):
///     r_t = 0:  S_t = exp(g_t) S_{t−1} + k_t u_tᵀ,  u_t = β_t (v_t − (exp(g_t) S_{t−1})ᵀ k_t)
///     r_t = 1:  S_t = S_{t−1}                (the token neither decays nor writes the state)
///     o_lin_t = s · S_tᵀ q_t                                          S_{−1} = initial_state (0 if absent)
///   softmax branch, over the softmax-routed keys so far  A_t = { j ≤ t : r_j = 1 }:
///     o_soft_t = Σ_{j∈A_t} exp(s q_t·k_j − m_t) v_j / Σ_{j∈A_t} exp(s q_t·k_j − m_t)    (0 when A_t = ∅)
///   o_t = o_lin_t + o_soft_t;   final_state = S_{T−1}.
///
/// Variants:
///   recurrent  the above, token by token (the definition).
///   chunked    linear branch: gated_delta_rule's chunked (WY) form, chunks of C, with g and β set to 0 on
///              softmax-routed tokens (which leaves S unchanged there, exactly); softmax branch: softmax's tiled
///              form, causal, with the bool mask "key j is softmax-routed".
/// Reductions: every chunk routed to softmax = causal softmax (S stays initial_state, so also o_lin = 0 without
/// one); every chunk routed to linear = gated_delta_rule.
/// </code>
/// Sources and choices. The paper was found with the search tool only as its abstract and secondary summaries
/// (arxiv.org/abs/2602.03681, the PMLR v306 PDF's first page, an emergentmind summary): they establish that each
/// layer shares q, k, v between a Gated DeltaNet branch and a softmax branch, that the sequence is split into
/// non-overlapping chunks of C tokens, and that a score module (mean pooling of the chunk, then a learned linear
/// map to two scores) decides each chunk's operation, learned by backpropagation. The method section itself was not
/// reachable, so these points are OUR choices, to be revisited against the paper:
/// - route is an input (0/1 per batch entry, chunk and head); the score module is not implemented (its weights and
///   its hard/soft decision at inference are unpinned). A value other than 0 or 1 is bad input.
/// - The linear branch sees only linear-routed tokens; softmax-routed tokens neither decay nor write S.
/// - The softmax branch sees only softmax-routed keys (causally, including the query's own token when routed to
///   softmax); tokens of the query's own linear chunk are not also visible through softmax.
/// - The two outputs are summed, each normalised on its own (no joint normaliser, no output gate); this is what
///   makes the two reductions above exact.
/// - One scale s for both branches; no q/k L2 norm (apply it to q, k before the call); no varlen, no GVA.
/// - chunk_size defaults to 64 (not pinned); the last chunk may be shorter.
/// </summary>
public static class NatsL
{
    /// <summary>The definition, token by token.</summary>
    public static DeltaResult Recurrent(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta, Tensor route, int chunkSize, NatsLOptions? options = null)
    {
        options ??= new NatsLOptions();
        var (B, T, H, K, V, routes) = Bind(q, k, v, g, beta, route, chunkSize, options);
        double s = options.Scale ?? 1 / Math.Sqrt(K);
        var o = Tensor.Zeros(B, T, H, V);
        var finalState = Tensor.Zeros(B, H, K, V);
        System.Threading.Tasks.Parallel.For(0, B * H, pair =>
        {
            int b = pair / H, h = pair % H;
            var slice = new Common.SequenceSlice(b, 0, T, b);
            double[][] Q = GatedLinear.PerHead.Rows(q, slice, h), Kr = GatedLinear.PerHead.Rows(k, slice, h), Vr = GatedLinear.PerHead.Rows(v, slice, h);
            double[] gate = GatedLinear.PerHead.Scalars(g, slice, h), β = GatedLinear.PerHead.Scalars(beta, slice, h);
            double[][] S = GatedLinear.PerHead.InitialState(options.InitialState, b, h, K, V);
            var softmaxKeys = new List<int>();
            var rows = new double[T][];
            for (int t = 0; t < T; t++)
            {
                bool toSoftmax = routes[b, t / chunkSize, h] == 1;
                if (toSoftmax)
                {
                    softmaxKeys.Add(t);
                }
                else
                {
                    // Gated delta rule: decay, then u = β (v − Sᵀk), S += k uᵀ.
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
                }
                // o_lin = s Sᵀq.
                var o_t = new double[V];
                for (int a = 0; a < K; a++)
                {
                    for (int c = 0; c < V; c++)
                    {
                        o_t[c] += s * Q[t][a] * S[a][c];
                    }
                }
                // o_soft over the softmax-routed keys so far, shifted by the row's max.
                if (softmaxKeys.Count > 0)
                {
                    var score = softmaxKeys.Select(j => s * Dot(Q[t], Kr[j])).ToArray();
                    double m = score.Max(), l = 0;
                    var acc = new double[V];
                    for (int i = 0; i < score.Length; i++)
                    {
                        double p = Math.Exp(score[i] - m);
                        l += p;
                        for (int c = 0; c < V; c++)
                        {
                            acc[c] += p * Vr[softmaxKeys[i]][c];
                        }
                    }
                    for (int c = 0; c < V; c++)
                    {
                        o_t[c] += acc[c] / l;
                    }
                }
                rows[t] = o_t;
            }
            GatedLinear.PerHead.WriteRows(o, rows, slice, h);
            GatedLinear.PerHead.WriteState(finalState, S, b, h);
        });
        return new DeltaResult(o, finalState);
    }

    /// <summary>gated_delta_rule's chunked form on the linear-routed tokens plus softmax's tiled form on the softmax-routed keys.</summary>
    public static DeltaResult Chunked(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta, Tensor route, int chunkSize, NatsLOptions? options = null)
    {
        options ??= new NatsLOptions();
        var (B, T, H, _, _, routes) = Bind(q, k, v, g, beta, route, chunkSize, options);
        // Linear branch: g = β = 0 on softmax-routed tokens leaves S as it was (exp(0)·S, u = 0).
        var gLinear = g.Clone();
        var betaLinear = beta.Clone();
        var mask = Tensor.Zeros(B, H, T, T);
        for (int b = 0; b < B; b++)
        {
            for (int t = 0; t < T; t++)
            {
                for (int h = 0; h < H; h++)
                {
                    if (routes[b, t / chunkSize, h] == 1)
                    {
                        gLinear.Data[(b * T + t) * H + h] = 0;
                        betaLinear.Data[(b * T + t) * H + h] = 0;
                        for (int i = 0; i < T; i++)
                        {
                            mask[b, h, i, t] = 1; // key t is a softmax key for every query (causality is the softmax's)
                        }
                    }
                }
            }
        }
        var linear = GatedDeltaRule.Chunked(q, k, v, gLinear, betaLinear, chunkSize,
            new DeltaOptions { Scale = options.Scale, InitialState = options.InitialState });
        var softmax = SoftmaxAttention.Tiled(q, k, v,
            new SoftmaxOptions { Scale = options.Scale, Causal = true, Mask = mask, MaskKind = MaskKind.Boolean }, chunkSize, chunkSize);
        var o = linear.O.Clone();
        for (int i = 0; i < o.Length; i++)
        {
            o.Data[i] += softmax.O.Data[i];
        }
        return new DeltaResult(o, linear.FinalState);
    }

    /// <summary>Checks shapes, the route and the chunk size; returns B, T, H, K, V and the route as [B,NC,H].</summary>
    private static (int B, int T, int H, int K, int V, Tensor Routes) Bind(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta, Tensor route, int chunkSize, NatsLOptions options)
    {
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
}
