using AttentionReference.Forms.Common;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Forms.Common;

/// <summary>A call's layout: B batch entries of T steps, or (Lengths given) B = 1 packed by cu_seqlens; H heads.</summary>
public sealed record SequenceHeadsCase(int B, int[]? Lengths, int T, int H, int K, int V, bool WithInitial, int Seed)
{
    public Tensor? CuSeqlens => Lengths is null ? null
        : new Tensor([Lengths.Length + 1], [0, .. Lengths.Select((_, n) => (double)Lengths.Take(n + 1).Sum())], DType.I32);

    public IReadOnlyList<SequenceSlice> Slices => Sequences.Slices(B, T, CuSeqlens);

    public static Arbitrary<SequenceHeadsCase> Arbitrary { get; } =
        (from varlen in Gen.Elements(false, true)
         from b in Gen.Choose(1, 3)
         from lengths in Gen.Choose(0, 4).ArrayOf().Where(l => l.Length is >= 1 and <= 4)
         from t in Gen.Choose(0, 6)
         from h in Gen.Choose(1, 3)
         from k in Gen.Choose(0, 3)
         from v in Gen.Choose(1, 4)
         from withInitial in Gen.Elements(false, true)
         from seed in Gen.Choose(0, int.MaxValue)
         select varlen ? new SequenceHeadsCase(1, lengths, lengths.Sum(), h, k, v, withInitial, seed)
                       : new SequenceHeadsCase(b, null, t, h, k, v, withInitial, seed)).ToArbitrary();
}

public sealed class SequenceHeadsTests
{
    // Every law here moves values without arithmetic (or with exact small-integer arithmetic), so equality is exact.

    [Fact]
    public void Every_output_row_is_written_by_the_pair_that_owns_it() => PropertyRuns.Check(Prop.ForAll(SequenceHeadsCase.Arbitrary, c =>
    {
        Tensor x = TestTensors.Normal(new Random(c.Seed), 1, c.B, c.T, c.H, c.V);
        var result = SequenceHeads.Run(c.Slices, c.B, c.T, c.H, c.V, [], pair => pair.WriteO(pair.Gather(x)));
        return result.O.Data.SequenceEqual(x.Data);
    }));

    [Fact]
    public void Rows_seen_in_place_equal_the_gathered_rows_and_write_through_to_o() => PropertyRuns.Check(Prop.ForAll(SequenceHeadsCase.Arbitrary, c =>
    {
        Tensor x = TestTensors.Normal(new Random(c.Seed), 1, c.B, c.T, c.H, c.V);
        bool sameAsGathered = true;
        var result = SequenceHeads.Run(c.Slices, c.B, c.T, c.H, c.V, [], pair =>
        {
            RowBlock rows = pair.Rows(x), o = pair.OutputRows();
            double[] gathered = pair.Gather(x);
            for (int t = 0; t < pair.Length; t++)
            {
                sameAsGathered &= rows[t].SequenceEqual(gathered.AsSpan(t * c.V, c.V));
                rows[t].CopyTo(o[t]);
            }
        });
        return sameAsGathered && result.O.Data.SequenceEqual(x.Data);
    }));

    [Fact]
    public void An_aligned_block_is_zeros_of_its_shape_seen_whole_or_by_rows()
    {
        RowBlock block = RowBlock.AlignedZeros(5, 12);
        Span<double> all = block.Contiguous();
        all.Fill(1.5);
        Assert.Equal((5, 12, 60), (block.Count, block.Width, all.Length));
        Assert.True(Enumerable.Range(0, 5).All(t => block[t].ToArray().All(x => x == 1.5)));
        Assert.True(RowBlock.AlignedZeros(3, 8).Contiguous().ToArray().All(x => x == 0));
        // A view with gaps between its rows has no single span.
        Assert.Throws<InvalidOperationException>(() => new RowBlock(new double[20], 0, 5, 4, 3).Contiguous());
    }

    [Theory]
    [InlineData(3, 0, 4, 4, 11)] // 3 packed rows of 4 need 12 values
    [InlineData(2, 5, 4, 4, 12)] // the last row would end at 5 + 4 + 4 = 13
    [InlineData(2, 0, 3, 4, 100)] // a stride shorter than a row would overlap the rows
    public void A_row_block_that_does_not_fit_its_array_is_refused(int count, int offset, int stride, int width, int length) =>
        Assert.Throws<ArgumentException>(() => new RowBlock(new double[length], offset, stride, count, width));

    [Fact]
    public void Each_pair_starts_from_its_initial_rows_and_leaves_its_final_rows() => PropertyRuns.Check(Prop.ForAll(SequenceHeadsCase.Arbitrary, c =>
    {
        var random = new Random(c.Seed);
        int n = c.Slices.Count;
        Tensor? s0 = c.WithInitial ? TestTensors.Normal(random, 1, n, c.H, c.K, c.V) : null;
        Tensor? z0 = c.WithInitial ? TestTensors.Normal(random, 1, n, c.H, c.K) : null;
        Tensor? m0 = c.WithInitial ? TestTensors.Normal(random, 1, n, c.H) : null;
        // The body doubles each state value and adds the pair's (state row, head, length): exact in double.
        var result = SequenceHeads.Run(c.Slices, c.B, c.T, c.H, c.V,
            [new StateTensor(s0, c.K, c.V), new StateTensor(z0, c.K), new StateTensor(m0)], pair =>
            {
                for (int i = 0; i < 3; i++)
                {
                    double[] row = pair.State(i);
                    for (int j = 0; j < row.Length; j++)
                    {
                        row[j] = 2 * row[j] + Mark(pair.Sequence.StateIndex, pair.H, pair.Length);
                    }
                }
            });
        var lengths = c.Slices.Select(s => s.Length).ToArray();
        return result.FinalStates[0].Shape.SequenceEqual([n, c.H, c.K, c.V])
            && result.FinalStates[1].Shape.SequenceEqual([n, c.H, c.K])
            && result.FinalStates[2].Shape.SequenceEqual([n, c.H])
            && Expected(s0, result.FinalStates[0], c.H, lengths)
            && Expected(z0, result.FinalStates[1], c.H, lengths)
            && Expected(m0, result.FinalStates[2], c.H, lengths);
    }));

    private static double Mark(int n, int h, int length) => 1000 * n + 10 * h + length;

    /// <summary>final[n, h, …] = 2 · initial[n, h, …] + Mark(n, h, length of sequence n), zeros standing for an absent initial.</summary>
    private static bool Expected(Tensor? initial, Tensor final, int heads, int[] lengths)
    {
        int size = lengths.Length * heads == 0 ? 0 : final.Length / (lengths.Length * heads);
        for (int i = 0; i < final.Length; i++)
        {
            int row = i / size, n = row / heads, h = row % heads;
            if (final.Data[i] != 2 * (initial?.Data[i] ?? 0) + Mark(n, h, lengths[n]))
            {
                return false;
            }
        }
        return true;
    }
}
