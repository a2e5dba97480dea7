using AttentionReference.Tensors;

namespace AttentionReference.Golden.Cases;

/// <summary>
/// Golden cases of the state-space family: every form and variant; s4d with complex and real modes; h3 with
/// head_dim &gt; 1; mamba with time-invariant, shared and grouped B/C, delta_bias + softplus, D, z and an initial
/// state, a block size not dividing L, and varlen with initial states; ssd with groups, D per head or per channel, z, dt_bias + softplus, chunk
/// sizes not dividing T, varlen with initial states, and strong decay. Parameters are drawn as the models initialise
/// them: S4D-Lin's A = −1/2 + iπn (jittered), mamba's A = −(n+1), Δ = softplus(normal − 2) or 0.1·e^(normal/2).
/// The input recipes are shared with the tests (a normal-tensor source is passed in).
/// </summary>
internal static class StateSpaceCases
{
    /// <summary>A source of normal tensors: (scale, shape) → scale · N(0, 1).</summary>
    public delegate Tensor NormalSource(double scale, params int[] shape);

    private static readonly Dictionary<string, string> None = [];

    public static IEnumerable<GoldenCase> All =>
    [
        S4dCase("recurrent", "recurrent", None, realA: false),
        S4dCase("convolution", "convolution", None, realA: false),
        S4dCase("fft", "fft", None, realA: false),
        S4dCase("real_a_recurrent", "recurrent", new() { ["real_a"] = "true" }, realA: true),
        S4dCase("real_a_fft", "fft", new() { ["real_a"] = "true" }, realA: true),

        H3Case("recurrent", "recurrent"),
        H3Case("convolution", "convolution"),

        MambaCase("recurrent_shared_bc", "recurrent", None, new MambaShape(2, 4, 11, 3, Groups: 1)),
        MambaCase("recurrent_time_invariant_bc", "recurrent", None, new MambaShape(2, 4, 11, 3, Groups: 0)),
        MambaCase("recurrent_grouped_softplus_z_state", "recurrent", new() { ["delta_softplus"] = "true" }, new MambaShape(2, 4, 11, 3, Groups: 2) { Extras = true }),
        MambaCase("scan_s4_grouped_softplus_z_state", "scan", new() { ["delta_softplus"] = "true", ["block_size"] = "4" }, new MambaShape(2, 4, 11, 3, Groups: 2) { Extras = true }),
        MambaCase("scan_s3_strong_decay", "scan", new() { ["block_size"] = "3" }, new MambaShape(1, 3, 10, 4, Groups: 1) { DeltaScale = 20 }),
        MambaCase("scan_s3_varlen_initial_state", "scan", new() { ["block_size"] = "3" }, new MambaShape(1, 4, 11, 3, Groups: 2) { CuSeqlens = [0, 4, 4, 11] }),

        SsdCase("recurrent", "recurrent", None, new SsdShape(2, 10, 4, 3, 2, 4)),
        SsdCase("quadratic", "quadratic", None, new SsdShape(2, 10, 4, 3, 2, 4)),
        SsdCase("chunked_q4", "chunked", new() { ["chunk_size"] = "4" }, new SsdShape(2, 10, 4, 3, 2, 4)),
        SsdCase("chunked_q3_d_per_channel_z_softplus", "chunked", new() { ["chunk_size"] = "3", ["dt_softplus"] = "true" }, new SsdShape(1, 8, 2, 3, 1, 3) { Extras = true }),
        SsdCase("chunked_q4_varlen_initial_state", "chunked", new() { ["chunk_size"] = "4" }, new SsdShape(1, 12, 2, 3, 2, 2) { CuSeqlens = [0, 5, 5, 12] }),
        SsdCase("quadratic_strong_decay", "quadratic", None, new SsdShape(1, 9, 2, 2, 1, 3) { DtScale = 20 }),
    ];

    private static NormalSource From(GoldenRandom random) => random.Normal;

    private static GoldenCase S4dCase(string name, string variant, Dictionary<string, string> parameters, bool realA) =>
        new("s4d", name, variant, parameters, random =>
        {
            var normal = From(random);
            var inputs = new Dictionary<string, Tensor> { ["u"] = normal(1, 2, 12, 3) };
            AddDiagonalSsm(inputs, normal, 3, 4, realA);
            return inputs;
        });

    private static GoldenCase H3Case(string name, string variant) =>
        new("h3", name, variant, None, random => H3Inputs(From(random), 2, 9, 2, 3, 4, 3));

    private static GoldenCase MambaCase(string name, string variant, Dictionary<string, string> parameters, MambaShape s) =>
        new("mamba", name, variant, parameters, random => MambaInputs(From(random), s, parameters.ContainsKey("delta_softplus")));

    private static GoldenCase SsdCase(string name, string variant, Dictionary<string, string> parameters, SsdShape s) =>
        new("ssd", name, variant, parameters, random => SsdInputs(From(random), s, parameters.ContainsKey("dt_softplus")));

    /// <summary>
    /// S4D parameters for H channels of N modes: dt = e^(−3 + N(0, ½²)), A = −½·e^(N(0, 0.3²)) + i(πn + N(0, 0.1²))
    /// (S4D-Lin, jittered; real_a: A = −(n+1)·e^(N(0, 0.3²)), S4D-Real), C ~ N(0, ½²), D ~ N(0, 1).
    /// </summary>
    public static void AddDiagonalSsm(Dictionary<string, Tensor> inputs, NormalSource normal, int channels, int modes, bool realA, double logDtShift = 0)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(normal);
        inputs["log_dt"] = Map(normal(0.5, channels), x => x - 3 + logDtShift);
        var jitter = normal(0.3, channels, modes);
        inputs["A_real"] = new Tensor([channels, modes], jitter.Data.Select((x, i) => (realA ? -(1 + (i % modes)) : -0.5) * Math.Exp(x)).ToArray());
        inputs["C_real"] = normal(0.5, channels, modes);
        if (!realA)
        {
            var imag = normal(0.1, channels, modes);
            inputs["A_imag"] = new Tensor([channels, modes], imag.Data.Select((x, i) => (Math.PI * (i % modes)) + x).ToArray());
            inputs["C_imag"] = normal(0.5, channels, modes);
        }
        inputs["D"] = normal(1, channels);
    }

    /// <summary>h3's inputs: q, k, v [B,T,H,d] ~ N(0, 1), shift taps [H,d,M] ~ N(0, ½²), shift_D [H,d], a diagonal SSM per head.</summary>
    public static Dictionary<string, Tensor> H3Inputs(NormalSource normal, int batch, int time, int heads, int d, int taps, int modes)
    {
        ArgumentNullException.ThrowIfNull(normal);
        var inputs = new Dictionary<string, Tensor>
        {
            ["q"] = normal(1, batch, time, heads, d),
            ["k"] = normal(1, batch, time, heads, d),
            ["v"] = normal(1, batch, time, heads, d),
            ["shift_kernel"] = normal(0.5, heads, d, taps),
            ["shift_D"] = normal(1, heads, d),
        };
        AddDiagonalSsm(inputs, normal, heads, modes, realA: false);
        return inputs;
    }

    /// <summary>Sizes of a mamba case: B, D, L, N, and B/C kind (0 time-invariant [D,N], 1 shared [B,N,L], G grouped).</summary>
    public sealed record MambaShape(int B, int D, int L, int N, int Groups)
    {
        /// <summary>D, z, delta_bias and initial_state present.</summary>
        public bool Extras { get; init; }

        /// <summary>Multiplies Δ (strong decay: Δ·A down to about −50).</summary>
        public double DeltaScale { get; init; } = 1;

        /// <summary>Varlen boundaries along L (B = 1), with an initial state per sequence.</summary>
        public int[]? CuSeqlens { get; init; }
    }

    /// <summary>
    /// mamba's inputs: A = −(n+1)·e^(N(0, 0.2²)) (mamba's A_log init), Δ = 0.1·e^(N(0, ½²)) or, with softplus,
    /// delta ~ N(0, 1) and delta_bias ~ N(−2, ½²); u, B, C, D, z, initial_state ~ N(0, 1).
    /// </summary>
    public static Dictionary<string, Tensor> MambaInputs(NormalSource normal, MambaShape s, bool softplus)
    {
        ArgumentNullException.ThrowIfNull(normal);
        ArgumentNullException.ThrowIfNull(s);
        int[] projection = s.Groups switch { 0 => [s.D, s.N], 1 => [s.B, s.N, s.L], _ => [s.B, s.Groups, s.N, s.L] };
        var jitter = normal(0.2, s.D, s.N);
        var inputs = new Dictionary<string, Tensor>
        {
            ["u"] = normal(1, s.B, s.D, s.L),
            ["delta"] = softplus ? normal(1, s.B, s.D, s.L) : Map(normal(0.5, s.B, s.D, s.L), x => s.DeltaScale * 0.1 * Math.Exp(x)),
            ["A"] = new Tensor([s.D, s.N], jitter.Data.Select((x, i) => -(1 + (i % s.N)) * Math.Exp(x)).ToArray()),
            ["B"] = normal(1, projection),
            ["C"] = normal(1, projection),
        };
        if (s.Extras)
        {
            inputs["D"] = normal(1, s.D);
            inputs["z"] = normal(1, s.B, s.D, s.L);
            inputs["delta_bias"] = Map(normal(0.5, s.D), x => x - 2);
            inputs["initial_state"] = normal(1, s.B, s.D, s.N);
        }
        if (s.CuSeqlens is { } cu)
        {
            inputs["cu_seqlens"] = new Tensor([cu.Length], cu.Select(x => (double)x).ToArray(), DType.I64);
            inputs["initial_state"] = normal(1, cu.Length - 1, s.D, s.N);
        }
        return inputs;
    }

    /// <summary>Sizes of an ssd case: B, T, H, P, G, N.</summary>
    public sealed record SsdShape(int B, int T, int H, int P, int G, int N)
    {
        /// <summary>D [H,P], z and dt_bias present, and an initial state.</summary>
        public bool Extras { get; init; }

        /// <summary>Varlen boundaries (B = 1), with an initial state per sequence.</summary>
        public int[]? CuSeqlens { get; init; }

        /// <summary>Multiplies Δ (strong decay: Δ·A down to about −50).</summary>
        public double DtScale { get; init; } = 1;
    }

    /// <summary>
    /// ssd's inputs: A = −e^(N(0, ½²)) per head, Δ = 0.1·e^(N(0, ½²)) (times DtScale) or, with softplus, dt ~ N(0, 1)
    /// and dt_bias ~ N(−2, ½²); x, B, C, D [H] (or [H,P] with extras), z, initial_state ~ N(0, 1).
    /// </summary>
    public static Dictionary<string, Tensor> SsdInputs(NormalSource normal, SsdShape s, bool softplus)
    {
        ArgumentNullException.ThrowIfNull(normal);
        ArgumentNullException.ThrowIfNull(s);
        var inputs = new Dictionary<string, Tensor>
        {
            ["x"] = normal(1, s.B, s.T, s.H, s.P),
            ["dt"] = softplus ? normal(1, s.B, s.T, s.H) : Map(normal(0.5, s.B, s.T, s.H), x => s.DtScale * 0.1 * Math.Exp(x)),
            ["A"] = Map(normal(0.5, s.H), x => -Math.Exp(x)),
            ["B"] = normal(1, s.B, s.T, s.G, s.N),
            ["C"] = normal(1, s.B, s.T, s.G, s.N),
            ["D"] = s.Extras ? normal(1, s.H, s.P) : normal(1, s.H),
        };
        if (s.Extras)
        {
            inputs["z"] = normal(1, s.B, s.T, s.H, s.P);
            inputs["dt_bias"] = Map(normal(0.5, s.H), x => x - 2);
            inputs["initial_state"] = normal(1, s.B, s.H, s.P, s.N);
        }
        if (s.CuSeqlens is { } cu)
        {
            inputs["cu_seqlens"] = new Tensor([cu.Length], cu.Select(x => (double)x).ToArray(), DType.I64);
            inputs["initial_state"] = normal(1, cu.Length - 1, s.H, s.P, s.N);
        }
        return inputs;
    }

    private static Tensor Map(Tensor x, Func<double, double> f) => new(x.ShapeArray(), x.Data.Select(f).ToArray());
}
