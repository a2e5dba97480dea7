using AttentionReference.Forms;
using AttentionReference.Forms.Delta;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.Delta;

/// <summary>rwkv7's laws: the family's (<see cref="DeltaFormLaws"/>), without GVA, and its DPLR definition.</summary>
public sealed class Rwkv7Tests : DeltaFormLaws
{
    private protected override IForm Form { get; } = new Rwkv7();

    // "w" is chunk_rwkv7's name of the log decay gk: the contract takes it as an alias.
    private protected override string[] Names { get; } = ["q", "k", "v", "a", "b", "w"];

    private protected override DeltaCase Fit(DeltaCase c) => c.WithoutGva();

    [Law]
    public bool Recurrent_equals_the_dplr_matrix_definition(DeltaCase c)
    {
        c = Fit(c);
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        var expected = Textbook.Dplr(x["q"], x["k"], x["v"], x["a"], x["b"], x["w"], c.InitialState(all));
        return DeltaLaws.Agree(Variant("recurrent", c)(x, c.InitialState(all), null), expected);
    }
}
