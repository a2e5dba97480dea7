using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.StateSpace;

/// <summary>
/// The gradients of a selective B and C ([B,N,L] or [B,G,N,L]) in a backward pass. Each is shared by the channels of a
/// group, so several pairs write it, and its steps are not its last axis, so a pair cannot write it in place by rows:
/// each pair writes its own block [N, steps] (mamba's layout), and <see cref="AddTo"/> sums the blocks into the
/// gradient in pair order after the run, as the runner sums the pairs' copies of a shared parameter's gradient.
/// </summary>
public sealed class ChannelSharedGradients
{
    private static readonly string[] Projections = ["B", "C"];
    private readonly Problem _problem;
    private readonly Dictionary<string, double[]?[]> _blocks = new(StringComparer.Ordinal); // per selective input, per pair

    /// <summary>The blocks of the selective ones of B and C of <paramref name="problem"/>.</summary>
    public ChannelSharedGradients(Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        _problem = problem;
        foreach (string name in Projections.Where(n => Mamba.IsSelective(problem, n)))
        {
            _blocks[name] = new double[]?[problem.Sequences.Count * problem["D"]];
        }
    }

    /// <summary>The pair's own block [N, steps] of the gradient of the selective input <paramref name="name"/>, zero at first.</summary>
    public Span<double> Of(Head head, string name)
    {
        ArgumentNullException.ThrowIfNull(head);
        double[]?[] blocks = _blocks[name];
        int pair = (head.Sequence.Index * _problem["D"]) + head.Index;
        return blocks[pair] ??= new double[_problem["N"] * head.T];
    }

    /// <summary>Adds every pair's blocks into the gradients dB and dC, pair by pair in order.</summary>
    public void AddTo(IReadOnlyDictionary<string, Tensor> gradients)
    {
        ArgumentNullException.ThrowIfNull(gradients);
        int D = _problem["D"], N = _problem["N"], L = _problem["L"];
        foreach (var (name, blocks) in _blocks)
        {
            Tensor gradient = gradients["d" + name];
            int groups = gradient.Rank == 4 ? _problem["G"] : 1;
            for (int pair = 0; pair < blocks.Length; pair++)
            {
                if (blocks[pair] is not { } block)
                {
                    continue;
                }
                Sequence sequence = _problem.Sequences[pair / D];
                int group = pair % D / (D / groups), steps = block.Length / Math.Max(N, 1), start = sequence.Steps("L").Start;
                for (int n = 0; n < N; n++)
                {
                    int offset = ((((sequence.Batch * groups) + group) * N) + n) * L + start;
                    VectorKernels.AddTo(block.AsSpan(n * steps, steps), gradient.Data.AsSpan(offset, steps));
                }
            }
        }
    }
}

/// <summary>
/// The pair's gradient of B (or C) as the backward passes write it: by step (dB_t += a·v) or by state index along the
/// steps (dB_t[n] += v_t). A time-invariant B's is the channel's row of dB [D,N] (summed over the steps here, over the
/// pairs by the runner); a selective B's is the pair's block of <see cref="ChannelSharedGradients"/>.
/// </summary>
internal readonly ref struct StepGradient
{
    private readonly Span<double> _values; // selective: the pair's block [N, steps]; else the row dB_d
    private readonly int _steps;
    private readonly bool _selective;

    public StepGradient(Head head, string name, ChannelSharedGradients shared)
    {
        _selective = Mamba.IsSelective(head.Problem, name);
        _values = _selective ? shared.Of(head, name) : head.Row("d" + name);
        _steps = head.T;
    }

    /// <summary>dB_t += a·v (v has N values).</summary>
    public void Axpy(int t, double a, ReadOnlySpan<double> v)
    {
        if (!_selective)
        {
            VectorKernels.Axpy(a, v, _values);
            return;
        }
        for (int n = 0; n < v.Length; n++)
        {
            _values[(n * _steps) + t] += a * v[n];
        }
    }

    /// <summary>dB_t[n] += v_t for every step t.</summary>
    public void AddSeries(int n, ReadOnlySpan<double> v)
    {
        if (_selective)
        {
            VectorKernels.AddTo(v, _values.Slice(n * _steps, _steps));
        }
        else
        {
            _values[n] += System.Numerics.Tensors.TensorPrimitives.Sum(v);
        }
    }
}
