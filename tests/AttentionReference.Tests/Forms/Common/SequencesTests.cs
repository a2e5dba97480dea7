using AttentionReference.Forms.Common;
using AttentionReference.Tensors;

namespace AttentionReference.Tests.Forms.Common;

public sealed class SequencesTests
{
    private static Tensor Cu(params int[] offsets) => new([offsets.Length], offsets.Select(o => (double)o).ToArray(), DType.I32);

    [Fact]
    public void Without_cu_seqlens_each_batch_entry_is_one_sequence() =>
        Assert.Equal([new(0, 0, 5, 0), new(1, 0, 5, 1)], Sequences.Slices(2, 5, null));

    [Fact]
    public void Cu_seqlens_cut_the_packed_time_axis_into_sequences_with_their_own_state_rows() =>
        Assert.Equal([new(0, 0, 3, 0), new(0, 3, 0, 1), new(0, 3, 4, 2)], Sequences.Slices(1, 7, Cu(0, 3, 3, 7)));

    [Theory]
    [InlineData(new[] { 1, 7 }, "must start at 0 and end at T = 7")]
    [InlineData(new[] { 0, 6 }, "must start at 0 and end at T = 7")]
    [InlineData(new[] { 0, 4, 2, 7 }, "must be non-decreasing")]
    public void Bad_cu_seqlens_name_the_tensor_and_the_rule(int[] offsets, string rule)
    {
        var error = Assert.Throws<InputException>(() => Sequences.Slices(1, 7, Cu(offsets)));
        Assert.StartsWith("tensor 'cu_seqlens': " + rule, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Cu_seqlens_need_batch_size_one() =>
        Assert.Contains("batch size must be 1", Assert.Throws<InputException>(() => Sequences.Slices(2, 7, Cu(0, 7))).Message, StringComparison.Ordinal);

    [Fact]
    public void Float_cu_seqlens_are_rejected() =>
        Assert.Contains("expected an integer tensor", Assert.Throws<InputException>(
            () => Sequences.Slices(1, 7, new Tensor([2], [0, 7]))).Message, StringComparison.Ordinal);
}
