using AttentionReference.Tensors;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Tensors;

public sealed class DimsTests
{
    [Fact]
    public void A_mismatched_extent_names_the_tensor_the_symbols_and_the_shape_found()
    {
        var dims = new Dims();
        dims.Bind("q", Tensor.Zeros(2, 16, 4, 8), "B,T,H,K");
        var error = Assert.Throws<InputException>(() => dims.Bind("k", Tensor.Zeros(2, 16, 4, 9), "B,S,H,K"));
        Assert.Equal("tensor 'k': expected shape [B,S,H,K] = [2,?,4,8], found [2,16,4,9]", error.Message);
    }

    [Fact]
    public void A_wrong_rank_is_reported_with_the_symbolic_shape()
    {
        var error = Assert.Throws<InputException>(() => new Dims().Bind("q", Tensor.Zeros(2, 16, 4), "B,T,H,K"));
        Assert.Equal("tensor 'q': expected shape [B,T,H,K], found [2,16,4]", error.Message);
    }

    [Fact]
    public void Layout_swap_is_its_own_inverse() => PropertyRuns.Check(Prop.ForAll(
        Gen.Choose(0, 3).Four().ToArbitrary(),
        dims =>
        {
            var (b, t, h, d) = dims;
            var x = new Tensor([b, t, h, d], Enumerable.Range(0, b * t * h * d).Select(i => (double)i).ToArray());
            var back = Layouts.SwapTimeAndHeads(Layouts.SwapTimeAndHeads(x));
            return back.Shape.SequenceEqual(x.Shape) && back.Data.SequenceEqual(x.Data);
        }));
}
