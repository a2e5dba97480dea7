using AttentionReference.Forms.Common;
using AttentionReference.Forms.Linear;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Hybrid;

/// <summary>
/// The backward pass of Based, every variant: o = o_lin + o_win, so each input's gradient is the sum of the two
/// branches' gradients from the same cotangent do.
/// <code>
///   linear branch  the feature-map attention's steps reversed (FeatureAttentionBackward.cs) with φq = φk = taylor2,
///                  f(x) = φ(q)·φ(k) = 1 + u + u²/2 with u = x/√K (f′(x) = (1 + u)/√K), a = linear_scale, eps, no gates:
///                  recurrent: the definition's reverse-time recurrence; parallel: the matrix form's chain rule (the
///                  sequence as one chunk); chunked: per chunk of C, last first, from the state entering each chunk.
///   window branch  softmax over W_t = { j : t − window &lt; j ≤ t } (SoftmaxRow.cs): the row's chain rule
///                  (recurrent, parallel: softmax's naive form), FlashAttention-2's tiled backward with C x C tiles
///                  (chunked: softmax's tiled form).
///   taylor2's Jacobian: x̃ = x / K^(1/4),  dx̃_a = dφ_{1+a} + Σ_b (dφ_{1+K+Ka+b} + dφ_{1+K+Kb+a}) x̃_b / √2,  dx = dx̃ / K^(1/4).
/// </code>
/// </summary>
public sealed partial class Based
{
    /// <inheritdoc/>
    public override bool HasGradients => true;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Backward(string variant, Problem problem)
    {
        BasedOptions options = BasedOptions.Read(problem);
        var kernel = new Taylor2Kernel(problem["K"], options);
        Action<Head> body = variant switch
        {
            "recurrent" => head =>
            {
                FeatureAttentionBackward.Recurrent(head, kernel);
                WindowRowsBackward(head, options);
            },
            "parallel" => head =>
            {
                FeatureAttentionBackward.Quadratic(head, kernel);
                WindowRowsBackward(head, options);
            },
            "chunked" => head =>
            {
                FeatureAttentionBackward.Chunked(head, kernel, options.ChunkSize);
                if (head.OptionalRows("do") is { } dO)
                {
                    int window = options.Window;
                    SoftmaxRow.TiledBackward(head.Rows("q"), head.Rows("k"), head.Rows("v"), dO, options.Scale,
                        Math.Min(options.ChunkSize, Math.Max(head.T, 1)), (t, j) => j <= t && j > t - window,
                        head.Rows("dq"), head.Rows("dk"), head.Rows("dv"));
                }
            },
            _ => throw UnknownVariant(variant),
        };
        return Heads.Backward(problem, body);
    }

    /// <summary>The window branch's backward pass, row by row over W_t (the definition's and the naive form's chain rule).</summary>
    private static void WindowRowsBackward(Head head, BasedOptions options)
    {
        if (head.OptionalRows("do") is not { } dO)
        {
            return;
        }
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), dq = head.Rows("dq"), dk = head.Rows("dk"), dv = head.Rows("dv");
        var window = new int[Math.Min(options.Window, head.T)];
        for (int t = 0; t < head.T; t++)
        {
            int first = Math.Max(0, t - options.Window + 1);
            for (int j = first; j <= t; j++)
            {
                window[j - first] = j;
            }
            SoftmaxRow.Backward(q[t], k, v, options.Scale, window.AsSpan(0, t - first + 1), dO[t], dq[t], dk, dv);
        }
    }

    /// <summary>taylor2 for queries and keys, f(x) = 1 + u + u²/2 with u = x/√K, a = linear_scale, normalised with eps.</summary>
    private sealed class Taylor2Kernel(int keyDim, BasedOptions options)
        : FeatureKernel(FeatureMaps.Dimension(LinearFeatureMap.Taylor2, keyDim, 0), options.LinearScale, options.Eps, normalize: true)
    {
        private readonly double _rootK = Math.Sqrt(keyDim), _rootRootK = Math.Sqrt(Math.Sqrt(keyDim));

        public override void Query(ReadOnlySpan<double> q, Span<double> φ) => FeatureMaps.Apply(LinearFeatureMap.Taylor2, q, φ);

        public override void Key(ReadOnlySpan<double> k, Span<double> φ) => FeatureMaps.Apply(LinearFeatureMap.Taylor2, k, φ);

        public override void QueryBackward(ReadOnlySpan<double> q, ReadOnlySpan<double> dφ, Span<double> dq) => Backward(q, dφ, dq);

        public override void KeyBackward(ReadOnlySpan<double> k, ReadOnlySpan<double> dφ, Span<double> dk) => Backward(k, dφ, dk);

        public override double Weight(double score)
        {
            double u = score / _rootK;
            return 1 + u + u * u / 2;
        }

        public override double Slope(double score) => (1 + score / _rootK) / _rootK;

        /// <summary>dx ← dx + Jᵀ dφ of taylor2 (class comment).</summary>
        private void Backward(ReadOnlySpan<double> x, ReadOnlySpan<double> dφ, Span<double> dx)
        {
            int K = x.Length;
            for (int a = 0; a < K; a++)
            {
                double dx̃ = dφ[1 + a];
                for (int b = 0; b < K; b++)
                {
                    dx̃ += (dφ[1 + K + K * a + b] + dφ[1 + K + K * b + a]) * (x[b] / _rootRootK) / Math.Sqrt(2);
                }
                dx[a] += dx̃ / _rootRootK;
            }
        }
    }
}
