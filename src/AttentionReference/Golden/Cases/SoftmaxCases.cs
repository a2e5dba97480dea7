using AttentionReference.Tensors;

namespace AttentionReference.Golden.Cases;

/// <summary>Golden cases of the softmax family.</summary>
internal static class SoftmaxCases
{
    public static IEnumerable<GoldenCase> All =>
    [
        Softmax("full", "naive", [], b: 2, tq: 8, tk: 8, hq: 2, hkv: 2, dk: 16, dv: 16),
        Softmax("causal", "naive", new() { ["causal"] = "true" }, b: 1, tq: 12, tk: 12, hq: 2, hkv: 2, dk: 8, dv: 8),
        Softmax("causal_gqa", "naive", new() { ["causal"] = "true" }, b: 2, tq: 6, tk: 6, hq: 4, hkv: 2, dk: 8, dv: 8),
        // Tq < Tk with Dk ≠ Dv: bottom-right alignment lets the last query see every key.
        Softmax("cross_causal_bottom_right", "naive", new() { ["causal"] = "true" }, b: 1, tq: 5, tk: 9, hq: 2, hkv: 1, dk: 8, dv: 4),
        // Tq > Tk under causal: the first Tq − Tk queries see no key (o = 0, lse = −inf).
        Softmax("mqa_empty_rows", "naive", new() { ["causal"] = "true" }, b: 1, tq: 7, tk: 3, hq: 3, hkv: 1, dk: 4, dv: 4),
        Softmax("scale", "naive", new() { ["scale"] = "0.3" }, b: 1, tq: 4, tk: 6, hq: 1, hkv: 1, dk: 3, dv: 5),
    ];

    private static GoldenCase Softmax(string name, string variant, Dictionary<string, string> parameters,
        int b, int tq, int tk, int hq, int hkv, int dk, int dv) =>
        new("softmax", name, variant, parameters, random => new Dictionary<string, Tensor>
        {
            ["q"] = random.Normal(1, b, tq, hq, dk),
            ["k"] = random.Normal(1, b, tk, hkv, dk),
            ["v"] = random.Normal(1, b, tk, hkv, dv),
        });
}
