using AttentionReference.Tensors;
using AttentionReference.Tests.Support;

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

    private static InputException Fails(string variant, Dictionary<string, Tensor> tensors, params string[] parameters) =>
        Fails(() => SoftmaxInputs.Form.Call(variant, tensors, parameters));

    private static Dictionary<string, Tensor> Qkv(Tensor? q = null, Tensor? k = null, Tensor? v = null) =>
        new() { ["q"] = q ?? Q, ["k"] = k ?? K, ["v"] = v ?? V };

    private static Dictionary<string, Tensor> Cache(Tensor k, Tensor v, Tensor? lengths = null, Tensor? table = null)
    {
        var tensors = new Dictionary<string, Tensor> { ["q"] = Q, ["k_cache"] = k, ["v_cache"] = v };
        if (lengths is not null)
        {
            tensors["cache_seqlens"] = lengths;
        }
        if (table is not null)
        {
            tensors["block_table"] = table;
        }
        return tensors;
    }

    [Theory]
    [InlineData(new[] { 3, 5 })]          // Tk wrong
    [InlineData(new[] { 2, 3, 3, 6 })]    // Hq wrong (neither 1 nor 4)
    [InlineData(new[] { 3, 1, 3, 6 })]    // B wrong
    [InlineData(new[] { 1, 1, 1, 2, 3, 6 })] // rank above 4
    public void A_mask_that_does_not_broadcast_names_mask_and_the_broadcastable_shape(int[] shape)
    {
        var error = Fails("naive", new Dictionary<string, Tensor>(Qkv()) { ["mask"] = Tensor.Zeros(shape) });
        Assert.Equal("mask", error.Tensor);
        Assert.Contains("broadcastable to [B,Hq,Tq,Tk] = [2,4,3,6]", error.Message, StringComparison.Ordinal);
        Assert.Contains(Tensor.FormatShape(shape), error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_float_bool_mask_must_hold_only_zeros_and_ones()
    {
        var mask = new Tensor([3, 6], Enumerable.Repeat(0.5, 18).ToArray());
        Assert.Equal("mask", Fails("naive", new Dictionary<string, Tensor>(Qkv()) { ["mask"] = mask }, "mask_type=bool").Tensor);
    }

    [Fact]
    public void An_integer_mask_cannot_be_additive()
    {
        var mask = Ints([3, 6], new double[18]);
        Assert.Equal("mask", Fails("naive", new Dictionary<string, Tensor>(Qkv()) { ["mask"] = mask }, "mask_type=additive").Tensor);
    }

    [Fact]
    public void Cu_seqlens_with_a_batch_above_one_is_refused()
    {
        var error = Fails("naive", new Dictionary<string, Tensor>(Qkv()) { ["cu_seqlens_q"] = Ints([2], 0, 3), ["cu_seqlens_k"] = Ints([2], 0, 6) });
        Assert.Equal("cu_seqlens_q", error.Tensor);
        Assert.Contains("batch size must be 1", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Cu_seqlens_q_without_cu_seqlens_k_is_refused()
    {
        Assert.Equal("cu_seqlens_k", Fails("naive", new Dictionary<string, Tensor>(Qkv()) { ["cu_seqlens_q"] = Ints([2], 0, 3) }).Tensor);
    }

    [Fact]
    public void Cu_seqlens_with_different_sequence_counts_are_refused()
    {
        var tensors = new Dictionary<string, Tensor>(Qkv(Q.Reshape(1, 6, 4, 5), K.Reshape(1, 12, 2, 5), V.Reshape(1, 12, 2, 7)))
        {
            ["cu_seqlens_q"] = Ints([3], 0, 2, 6),
            ["cu_seqlens_k"] = Ints([2], 0, 12),
        };
        Assert.Equal("cu_seqlens_k", Fails("tiled", tensors).Tensor);
    }

    [Fact]
    public void Block_sizes_and_split_counts_below_one_are_refused()
    {
        Assert.Contains("'block_q'", Fails("tiled", Qkv(), "block_q=0").Message, StringComparison.Ordinal);
        Assert.Contains("'block_k'", Fails("tiled", Qkv(), "block_k=-1").Message, StringComparison.Ordinal);
        Assert.Contains("'num_splits'", Fails("split", Qkv(), "num_splits=0").Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Windows_below_minus_one_and_negative_softcaps_are_refused()
    {
        Assert.Contains("'window_left'", Fails("naive", Qkv(), "window_left=-2").Message, StringComparison.Ordinal);
        Assert.Contains("'window_right'", Fails("naive", Qkv(), "window_right=-3").Message, StringComparison.Ordinal);
        Assert.Contains("'softcap'", Fails("naive", Qkv(), "softcap=-1").Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Block_sizes_and_split_counts_of_any_size_work()
    {
        // Sizes far beyond T: one block, or parts past the keys that are empty; nothing overflows or allocates by them.
        var naive = new SoftmaxInputs(Q, K, V).Run("naive");
        string most = int.MaxValue.ToString(System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(Agreement.Close(new SoftmaxInputs(Q, K, V).Run("tiled", "block_q=" + most, "block_k=" + most), naive, V));
        Assert.True(Agreement.Close(new SoftmaxInputs(Q, K, V).Run("split", "num_splits=1000"), naive, V));
        Assert.True(Agreement.Close(new SoftmaxInputs(Q, K, V).Run("split", "num_splits=" + most), naive, V));
    }

    [Fact]
    public void Decode_inputs_that_disagree_name_the_tensor_at_fault()
    {
        // v_cache with another cache length than k_cache.
        Assert.Equal("v_cache", Fails("decode", Cache(K, TestTensors.Normal(s_random, 1, 2, 5, 2, 7))).Tensor);
        // An unpaged cache of another batch size.
        Assert.Equal("k_cache", Fails("decode", Cache(K.Reshape(1, 12, 2, 5), V.Reshape(1, 12, 2, 7))).Tensor);
        // cache_seqlens longer than the cache.
        Assert.Equal("cache_seqlens", Fails("decode", Cache(K, V, Ints([2], 6, 7))).Tensor);
        // cache_seqlens of the wrong batch size, or of floats.
        Assert.Equal("cache_seqlens", Fails("decode", Cache(K, V, Ints([3], 1, 1, 1))).Tensor);
        Assert.Equal("cache_seqlens", Fails("decode", Cache(K, V, new Tensor([2], [1.0, 1.0]))).Tensor);
        // A paged cache of 4 blocks of 3 slots: a block index past the end, read by batch 1.
        var (kPaged, vPaged) = (K.Reshape(4, 3, 2, 5), V.Reshape(4, 3, 2, 7));
        var error = Fails("decode", Cache(kPaged, vPaged, Ints([2], 3, 4), Ints([2, 2], 0, 1, 2, 4)));
        Assert.Equal("block_table", error.Tensor);
        Assert.Contains("[1,1]", error.Message, StringComparison.Ordinal);
        // A mask, varlen, or new keys with decode; a cache with another variant; decode without its cache.
        Assert.Equal("mask", Fails("decode", new Dictionary<string, Tensor>(Cache(K, V)) { ["mask"] = Tensor.Zeros(3, 6) }).Tensor);
        Assert.StartsWith("cu_seqlens", Fails("decode", new Dictionary<string, Tensor>(Cache(K, V)) { ["cu_seqlens_q"] = Ints([2], 0, 3) }).Tensor, StringComparison.Ordinal);
        var packed = new Dictionary<string, Tensor> { ["q"] = Q.Reshape(1, 6, 4, 5), ["k_cache"] = K.Reshape(1, 12, 2, 5), ["v_cache"] = V.Reshape(1, 12, 2, 7) };
        Assert.StartsWith("cu_seqlens", Fails("decode", new Dictionary<string, Tensor>(packed) { ["cu_seqlens_q"] = Ints([2], 0, 6), ["cu_seqlens_k"] = Ints([2], 0, 12) }).Tensor, StringComparison.Ordinal);
        Assert.Equal("k", Fails("decode", new Dictionary<string, Tensor>(Cache(K, V)) { ["k"] = K }).Tensor);
        Assert.Equal("k_cache", Fails("naive", new Dictionary<string, Tensor>(Qkv()) { ["k_cache"] = K }).Tensor);
        Assert.Equal("v_cache", Fails("decode", new Dictionary<string, Tensor> { ["q"] = Q, ["k_cache"] = K }).Tensor);
    }

    [Fact]
    public void An_unused_block_table_entry_may_hold_anything()
    {
        // flash-attn reads only the pages below cache_seqlens; the rest of the table is not looked at.
        var (kPaged, vPaged) = (K.Reshape(4, 3, 2, 5), V.Reshape(4, 3, 2, 7));
        var result = SoftmaxInputs.Form.Call("decode", Cache(kPaged, vPaged, Ints([2], 3, 2), Ints([2, 2], 0, -1, 2, 99)));
        Assert.All(result["o"].Data, x => Assert.True(double.IsFinite(x)));
    }

    [Fact]
    public void An_unknown_variant_names_the_known_ones()
    {
        Assert.Contains("known variants: naive, tiled, split, decode", Fails("flash", Qkv()).Message, StringComparison.Ordinal);
    }
}
