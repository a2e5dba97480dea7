using AttentionReference.Forms.Common;

namespace AttentionReference.Gpu.StateSpace;

/// <summary>
/// One block of a sequence's steps (mamba's scan blocks, ssd's chunks): steps [First, First + Length) of sequence
/// <see cref="Sequence"/>, counted from the sequence's start.
/// </summary>
internal readonly record struct StepBlock(int Sequence, int First, int Length)
{
    /// <summary>
    /// The blocks of <paramref name="size"/> steps from each sequence's start (the last one of a sequence possibly
    /// short), as the reference cuts them (Mamba.BlockedScan, Chunks.Of: a size past a sequence's length is one block),
    /// and where each sequence's blocks begin: those of sequence s are [first[s], first[s + 1]).
    /// </summary>
    public static (StepBlock[] Blocks, int[] First) Of(SequenceSlice[] sequences, int size)
    {
        var blocks = new List<StepBlock>();
        var first = new int[sequences.Length + 1];
        for (int s = 0; s < sequences.Length; s++)
        {
            first[s] = blocks.Count;
            for (int start = 0; start < sequences[s].Length; start += size)
            {
                blocks.Add(new StepBlock(s, start, Math.Min(size, sequences[s].Length - start)));
            }
        }
        first[^1] = blocks.Count;
        return (blocks.ToArray(), first);
    }
}
