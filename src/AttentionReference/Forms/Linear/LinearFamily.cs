namespace AttentionReference.Forms.Linear;

/// <summary>The forms of the linear and gated linear (diagonal decay) families, in the order of FORMS.md.</summary>
internal static class LinearFamily
{
    public static IReadOnlyList<IForm> Forms { get; } =
    [
        new LinearForm(),
        new GatedLinear.RetentionForm(),
        new GatedLinear.SimpleGlaForm(),
        new GatedLinear.GlaForm(),
        new GatedLinear.Hgrn2Form(),
    ];
}
