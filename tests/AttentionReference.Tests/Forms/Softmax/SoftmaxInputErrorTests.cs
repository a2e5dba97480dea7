using AttentionReference.Forms.Softmax;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using Sm = AttentionReference.Forms.Softmax.Softmax;

namespace AttentionReference.Tests.Forms.Softmax;

/// <summary>Bad option combinations: one InputException that names the tensor or parameter and what was expected.</summary>
public sealed class SoftmaxInputErrorTests
{
    private static readonly Random s_random = new(3);
    private static readonly Tensor Q = TestTensors.Normal(s_random, 1, 2, 3, 4, 5);
    private static readonly Tensor K = TestTensors.Normal(s_random, 1, 2, 6, 2, 5);
    private static readonly Tensor V = TestTensors.Normal(s_random, 1, 2, 6, 2, 7);

    private static Tensor Ints(int[] shape, params double[] values) => new(shape, values, DType.I32);

    private static InputException Fails(Action action) => Assert.Throws<InputException>(action);

    [Theory]
    [InlineData(new[] { 3, 5 })]          // Tk wrong
    [InlineData(new[] { 2, 3, 3, 6 })]    // Hq wrong (neither 1 nor 4)
    [InlineData(new[] { 3, 1, 3, 6 })]    // B wrong
    [InlineData(new[] { 1, 1, 1, 2, 3, 6 })] // rank above 4
    public void A_mask_that_does_not_broadcast_names_mask_and_the_broadcastable_shape(int[] shape)
    {
        var mask = Tensor.Zeros(shape);
        var error = Fails(() => Sm.Naive(Q, K, V, new SoftmaxOptions { Mask = mask }));
        Assert.Equal("mask", error.Tensor);
        Assert.Contains("broadcastable to [B,Hq,Tq,Tk] = [2,4,3,6]", error.Message, StringComparison.Ordinal);
        Assert.Contains(Tensor.FormatShape(shape), error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_float_bool_mask_must_hold_only_zeros_and_ones()
    {
        var mask = new Tensor([3, 6], Enumerable.Repeat(0.5, 18).ToArray());
        var error = Fails(() => Sm.Naive(Q, K, V, new SoftmaxOptions { Mask = mask, MaskKind = MaskKind.Boolean }));
        Assert.Equal("mask", error.Tensor);
    }

    [Fact]
    public void An_integer_mask_cannot_be_additive()
    {
        var mask = Ints([3, 6], new double[18]);
        Assert.Equal("mask", Fails(() => Sm.Naive(Q, K, V, new SoftmaxOptions { Mask = mask, MaskKind = MaskKind.Additive })).Tensor);
    }

    [Fact]
    public void Cu_seqlens_with_a_batch_above_one_is_refused()
    {
        var options = new SoftmaxOptions { CuSeqlensQ = Ints([2], 0, 3), CuSeqlensK = Ints([2], 0, 6) };
        var error = Fails(() => Sm.Naive(Q, K, V, options));
        Assert.Equal("cu_seqlens_q", error.Tensor);
        Assert.Contains("batch size must be 1", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Cu_seqlens_q_without_cu_seqlens_k_is_refused()
    {
        var error = Fails(() => Sm.Naive(Q, K, V, new SoftmaxOptions { CuSeqlensQ = Ints([2], 0, 3) }));
        Assert.Equal("cu_seqlens_k", error.Tensor);
    }

    [Fact]
    public void Cu_seqlens_with_different_sequence_counts_are_refused()
    {
        var (q, k, v) = (Q.Reshape(1, 6, 4, 5), K.Reshape(1, 12, 2, 5), V.Reshape(1, 12, 2, 7));
        var options = new SoftmaxOptions { CuSeqlensQ = Ints([3], 0, 2, 6), CuSeqlensK = Ints([2], 0, 12) };
        Assert.Equal("cu_seqlens_k", Fails(() => Sm.Tiled(q, k, v, options)).Tensor);
    }

    [Fact]
    public void Block_sizes_and_split_counts_below_one_are_refused()
    {
        Assert.Contains("'block_q'", Fails(() => Sm.Tiled(Q, K, V, null, blockQ: 0)).Message, StringComparison.Ordinal);
        Assert.Contains("'block_k'", Fails(() => Sm.Tiled(Q, K, V, null, blockK: -1)).Message, StringComparison.Ordinal);
        Assert.Contains("'num_splits'", Fails(() => Sm.Split(Q, K, V, null, numSplits: 0)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Block_sizes_and_split_counts_of_any_size_work()
    {
        // Sizes far beyond T: one block, or parts past the keys that are empty; nothing overflows or allocates by them.
        var naive = Sm.Naive(Q, K, V);
        Assert.True(Agreement.Close(Sm.Tiled(Q, K, V, null, int.MaxValue, int.MaxValue), naive, V));
        Assert.True(Agreement.Close(Sm.Split(Q, K, V, null, numSplits: 1000), naive, V));
    }

    [Fact]
    public void Decode_inputs_that_disagree_name_the_tensor_at_fault()
    {
        // v_cache with another cache length than k_cache.
        Assert.Equal("v_cache", Fails(() => Sm.Decode(Q, new KvCache(K, TestTensors.Normal(s_random, 1, 2, 5, 2, 7)))).Tensor);
        // cache_seqlens longer than the cache.
        Assert.Equal("cache_seqlens", Fails(() => Sm.Decode(Q, new KvCache(K, V, Ints([2], 6, 7)))).Tensor);
        // cache_seqlens of the wrong batch size, or of floats.
        Assert.Equal("cache_seqlens", Fails(() => Sm.Decode(Q, new KvCache(K, V, Ints([3], 1, 1, 1)))).Tensor);
        Assert.Equal("cache_seqlens", Fails(() => Sm.Decode(Q, new KvCache(K, V, new Tensor([2], [1.0, 1.0])))).Tensor);
        // A paged cache of 4 blocks of 3 slots: a block index past the end, read by batch 1.
        var (kPaged, vPaged) = (K.Reshape(4, 3, 2, 5), V.Reshape(4, 3, 2, 7));
        var error = Fails(() => Sm.Decode(Q, new KvCache(kPaged, vPaged, Ints([2], 3, 4), Ints([2, 2], 0, 1, 2, 4))));
        Assert.Equal("block_table", error.Tensor);
        Assert.Contains("[1,1]", error.Message, StringComparison.Ordinal);
        // A mask, or varlen, with decode.
        Assert.Equal("mask", Fails(() => Sm.Decode(Q, new KvCache(K, V), new SoftmaxOptions { Mask = Tensor.Zeros(3, 6) })).Tensor);
        Assert.Equal("cu_seqlens_q", Fails(() => Sm.Decode(Q, new KvCache(K, V), new SoftmaxOptions { CuSeqlensQ = Ints([2], 0, 3) })).Tensor);
    }

    [Fact]
    public void An_unused_block_table_entry_may_hold_anything()
    {
        // flash-attn reads only the pages below cache_seqlens; the rest of the table is not looked at.
        var (kPaged, vPaged) = (K.Reshape(4, 3, 2, 5), V.Reshape(4, 3, 2, 7));
        var result = Sm.Decode(Q, new KvCache(kPaged, vPaged, Ints([2], 3, 2), Ints([2, 2], 0, -1, 2, 99)));
        Assert.All(result.O.Data, x => Assert.True(double.IsFinite(x)));
    }

    [Fact]
    public void Merge_refuses_partials_of_different_shapes()
    {
        var a = Sm.Naive(Q, K, V);
        var b = Sm.Naive(Q.Reshape(1, 6, 4, 5), K.Reshape(1, 12, 2, 5), V.Reshape(1, 12, 2, 7));
        Fails(() => Sm.Merge([a, b]));
    }
}
