using AttentionReference.Forms.Common;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.GatedLinear;

/// <summary>Outputs of a form with a K×V state per head: o [B,T,H,V] and final_state [N,H,K,V].</summary>
public sealed record StateResult(Tensor O, Tensor FinalState);

/// <summary>
/// Row gathering for the forms that do not bind through their contract yet (transitional: goes with the last of them;
/// <see cref="Heads"/> is the runner that replaces it).
/// </summary>
internal static class PerHead
{
    /// <summary>Rows x[b, start + t, h, :] for t in [0, length) of a [B,T,H,D] tensor.</summary>
    public static double[][] Rows(Tensor x, SequenceSlice slice, int h)
    {
        ArgumentNullException.ThrowIfNull(x);
        int time = x.Dim(1), heads = x.Dim(2), d = x.Dim(3);
        var rows = new double[slice.Length][];
        for (int t = 0; t < slice.Length; t++)
        {
            rows[t] = x.Data.AsSpan(((slice.Batch * time + slice.Start + t) * heads + h) * d, d).ToArray();
        }
        return rows;
    }

    /// <summary>Values x[b, start + t, h] for t in [0, length) of a [B,T,H] tensor.</summary>
    public static double[] Scalars(Tensor x, SequenceSlice slice, int h)
    {
        ArgumentNullException.ThrowIfNull(x);
        int time = x.Dim(1), heads = x.Dim(2);
        var values = new double[slice.Length];
        for (int t = 0; t < slice.Length; t++)
        {
            values[t] = x.Data[(slice.Batch * time + slice.Start + t) * heads + h];
        }
        return values;
    }

    /// <summary>initial_state[n, h] as S[K][V]; zeros when absent.</summary>
    public static double[][] InitialState(Tensor? initialState, int n, int h, int k, int v)
    {
        var S = new double[k][];
        for (int a = 0; a < k; a++)
        {
            S[a] = initialState is null ? new double[v] : initialState.Data.AsSpan(((n * initialState.Dim(1) + h) * k + a) * v, v).ToArray();
        }
        return S;
    }

    /// <summary>Writes o's rows of one pair into o [B,T,H,V].</summary>
    public static void WriteRows(Tensor o, double[][] rows, SequenceSlice slice, int h)
    {
        ArgumentNullException.ThrowIfNull(o);
        ArgumentNullException.ThrowIfNull(rows);
        int time = o.Dim(1), heads = o.Dim(2), v = o.Dim(3);
        for (int t = 0; t < rows.Length; t++)
        {
            rows[t].CopyTo(o.Data.AsSpan(((slice.Batch * time + slice.Start + t) * heads + h) * v, v));
        }
    }

    /// <summary>Writes S[K][V] into state[n, h] of a [N,H,K,V] tensor.</summary>
    public static void WriteState(Tensor state, double[][] S, int n, int h)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(S);
        int heads = state.Dim(1), k = state.Dim(2), v = state.Dim(3);
        for (int a = 0; a < k; a++)
        {
            S[a].CopyTo(state.Data.AsSpan(((n * heads + h) * k + a) * v, v));
        }
    }
}
