using AttentionReference.Forms.Delta;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Forms.Delta;

/// <summary>How large β is: the regimes the laws must hold in.</summary>
public enum BetaRegime
{
    /// <summary>β ∈ (0, 1): the usual sigmoid range.</summary>
    Usual,
    /// <summary>β ∈ (0, 1e-3]: the update barely writes.</summary>
    NearZero,
    /// <summary>β ∈ [1.9, 1.99] with L2-normalised keys: I − βkkᵀ has the eigenvalue 1 − β near −1.</summary>
    NearTwo,
}

/// <summary>
/// A random problem for the delta-rule family: T = 1 and T not a multiple of C, GVA, K ≠ V, odd dims, the three β
/// regimes, gates from mild to −20 per step, per-value β, in-kernel L2 norm, with or without an initial state.
/// The inputs are named as fla names them; <see cref="All"/> gives every tensor any form of the family reads.
/// </summary>
public sealed record DeltaCase(
    int B, int T, int H, int Group, int K, int V, int Chunk, BetaRegime Beta, double GateFloor,
    bool PerValueBeta, bool L2Norm, bool WithInitialState, int Seed)
{
    public int HV => H * Group;

    /// <summary>The cases every law draws from (the regimes below are this case with one thing pinned).</summary>
    public static Arbitrary<DeltaCase> Arbitrary { get; } = Generator().ToArbitrary();

    /// <summary>One value head per key head (rwkv7, and laws across forms that need H = HV).</summary>
    public DeltaCase WithoutGva() => this with { Group = 1 };

    /// <summary>β ∈ [1.9, 1.99] with L2-normalised keys: the edge of the delta rule's stable range.</summary>
    public DeltaCase NearTwo() => this with { Beta = BetaRegime.NearTwo, L2Norm = true };

    /// <summary>Log gates uniform in [−20, 0] per step.</summary>
    public DeltaCase StrongGates() => this with { GateFloor = 20 };

    private static Gen<DeltaCase> Generator() =>
        from b in Gen.Choose(1, 2)
        from t in Gen.Choose(1, 17)
        from h in Gen.Choose(1, 2)
        from g in Gen.Elements(1, 1, 2)
        from k in Gen.Elements(1, 3, 4, 8)
        from v in Gen.Elements(1, 2, 5)
        from chunk in Gen.Choose(1, 20)
        from beta in Gen.Elements(BetaRegime.Usual, BetaRegime.Usual, BetaRegime.NearZero, BetaRegime.NearTwo)
        from floor in Gen.Elements(0.1, 1.0, 5.0, 20.0)
        from perValue in Gen.Elements(false, true)
        from l2 in Gen.Elements(false, true)
        from s0 in Gen.Elements(false, true)
        from seed in Gen.Choose(0, int.MaxValue)
        select new DeltaCase(b, t, h, g, k, v, chunk, beta, floor, perValue, l2 || beta == BetaRegime.NearTwo, s0, seed);

    /// <summary>
    /// q, k, v, beta, g [B,T,HV], gk [B,T,HV,K] and rwkv7's a, b, gk' [B,T,H,K] (as "a", "b", "w"), plus the initial state.
    /// Keys are N(0, 1/K) (unit norm on average) unless the form normalises them, in which case they are N(0, 1).
    /// </summary>
    public Dictionary<string, Tensor> All()
    {
        var random = new Random(Seed);
        var inputs = new Dictionary<string, Tensor>
        {
            ["q"] = TestTensors.Normal(random, 1, B, T, H, K),
            ["k"] = TestTensors.Normal(random, L2Norm ? 1 : 1 / Math.Sqrt(K), B, T, H, K),
            ["v"] = TestTensors.Normal(random, 1, B, T, HV, V),
            ["beta"] = Uniform(random, BetaLow, BetaHigh, PerValueBeta ? [B, T, HV, V] : [B, T, HV]),
            ["g"] = Uniform(random, -GateFloor, 0, B, T, HV),
            ["gk"] = Uniform(random, -GateFloor, 0, B, T, HV, K),
        };
        // rwkv7 as RWKV-7 builds it: a = −κ̂, b = κ̂ ⊙ α with κ̂ a unit vector and α ∈ (0, 1) (or near 2 in the edge
        // regime), so the transition Diag(exp(w)) − (κ̂ ⊙ α) κ̂ᵀ stays bounded like the delta rule's.
        Tensor kappa = TestTensors.Normal(random, 1, B, T, H, K);
        for (int row = 0; row < B * T * H; row++)
        {
            QkL2Norm.Normalise(kappa.Data.AsSpan(row * K, K));
        }
        Tensor alpha = Uniform(random, BetaLow, BetaHigh, B, T, H, K);
        var a = Tensor.Zeros(B, T, H, K);
        var bTensor = Tensor.Zeros(B, T, H, K);
        for (int i = 0; i < a.Length; i++)
        {
            a.Data[i] = -kappa.Data[i];
            bTensor.Data[i] = kappa.Data[i] * alpha.Data[i];
        }
        inputs["a"] = a;
        inputs["b"] = bTensor;
        inputs["w"] = Uniform(random, -GateFloor, 0, B, T, H, K);
        inputs["initial_state"] = TestTensors.Normal(random, 1, B, HV, K, V);
        return inputs;
    }

    /// <summary>The initial state, or null when the case has none.</summary>
    public Tensor? InitialState(Dictionary<string, Tensor> all) => WithInitialState ? all["initial_state"] : null;

    private double BetaLow => Beta switch { BetaRegime.NearZero => 0, BetaRegime.NearTwo => 1.9, _ => 0 };
    private double BetaHigh => Beta switch { BetaRegime.NearZero => 1e-3, BetaRegime.NearTwo => 1.99, _ => 1 };

    /// <summary>Uniform values in [low, high).</summary>
    public static Tensor Uniform(Random random, double low, double high, params int[] shape)
    {
        var data = new double[Tensor.ElementCount(shape)];
        for (int i = 0; i < data.Length; i++)
        {
            data[i] = low + (high - low) * random.NextDouble();
        }
        return new Tensor(shape, data);
    }
}

/// <summary>Time-axis surgery on [B,T,...] tensors, for the state-passing, varlen and causality laws.</summary>
internal static class TimeAxis
{
    /// <summary>Time steps [start, start + length) of a [B,T,...] tensor.</summary>
    public static Tensor Slice(Tensor x, int start, int length)
    {
        int[] shape = x.ShapeArray();
        int batch = shape[0], time = shape[1], row = x.Length / Math.Max(1, batch * time);
        shape[1] = length;
        var result = Tensor.Zeros(shape);
        for (int b = 0; b < batch; b++)
        {
            x.Data.AsSpan((b * time + start) * row, length * row).CopyTo(result.Data.AsSpan(b * length * row, length * row));
        }
        return result;
    }

    /// <summary>Two [B,T,...] tensors joined along time.</summary>
    public static Tensor Concat(Tensor first, Tensor second)
    {
        int[] shape = first.ShapeArray();
        int batch = shape[0], t1 = shape[1], t2 = second.Dim(1);
        int row = t1 > 0 ? first.Length / (batch * t1) : t2 > 0 ? second.Length / (batch * t2) : 0;
        shape[1] = t1 + t2;
        var result = Tensor.Zeros(shape);
        for (int b = 0; b < batch; b++)
        {
            first.Data.AsSpan(b * t1 * row, t1 * row).CopyTo(result.Data.AsSpan(b * (t1 + t2) * row, t1 * row));
            second.Data.AsSpan(b * t2 * row, t2 * row).CopyTo(result.Data.AsSpan((b * (t1 + t2) + t1) * row, t2 * row));
        }
        return result;
    }

    /// <summary>The tensor with batch entry <paramref name="b"/> only, as B = 1.</summary>
    public static Tensor Entry(Tensor x, int b)
    {
        int[] shape = x.ShapeArray();
        int size = x.Length / shape[0];
        shape[0] = 1;
        return new Tensor(shape, x.Data.AsSpan(b * size, size).ToArray());
    }

    /// <summary>Batch entries joined along time, as B = 1 (packing for varlen).</summary>
    public static Tensor Pack(IReadOnlyList<Tensor> entries)
    {
        Tensor result = entries[0];
        for (int i = 1; i < entries.Count; i++)
        {
            result = Concat(result, entries[i]);
        }
        return result;
    }

    /// <summary>Adds 1 to every element at time ≥ <paramref name="from"/>.</summary>
    public static Tensor PerturbFrom(Tensor x, int from)
    {
        Tensor y = x.Clone();
        int batch = x.Dim(0), time = x.Dim(1), row = x.Length / Math.Max(1, batch * time);
        for (int b = 0; b < batch; b++)
        {
            for (int i = (b * time + from) * row; i < (b + 1) * time * row; i++)
            {
                y.Data[i] += 1;
            }
        }
        return y;
    }
}
