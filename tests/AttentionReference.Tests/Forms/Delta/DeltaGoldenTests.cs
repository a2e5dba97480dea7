using AttentionReference.IO;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.Delta;

/// <summary>The shipped goldens of the family hold for every variant, not only the one that wrote them.</summary>
public sealed class DeltaGoldenTests
{
    public static TheoryData<string> Cases()
    {
        var data = new TheoryData<string>();
        foreach (var c in AttentionReference.Golden.GoldenCases.All.Where(c => c.Form is "delta_rule" or "gated_delta_rule" or "kda" or "rwkv7"))
        {
            data.Add(c.Id);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Every_variant_reproduces_the_golden_outputs(string id)
    {
        string path = RepoPaths.Of("golden", id + ".safetensors");
        TensorFile golden = TensorFiles.Read(path);
        var form = AttentionReference.Forms.FormCatalog.Find(id.Split('/')[0]);
        var inputs = golden.Metadata["inputs"].Split(',').ToDictionary(n => n, n => golden[n]);
        foreach (string variant in form.Variants)
        {
            foreach (int chunk in new[] { 1, 2, 5, 64 })
            {
                var overrides = new Dictionary<string, string> { ["chunk_size"] = chunk.ToString(System.Globalization.CultureInfo.InvariantCulture) };
                var result = AttentionReference.Forms.FormRunner.Run(form, inputs, golden.Metadata,
                    new AttentionReference.Forms.RunOptions { Variant = variant, Overrides = overrides });
                foreach (string output in golden.Metadata["outputs"].Split(','))
                {
                    // Another association order of the same sums in double (see DeltaLaws.SameMathInDouble).
                    TestTensors.AssertClose(result.Outputs[output], golden[output], DeltaLaws.SameMathInDouble, $"{id} {variant} C={chunk} {output}");
                }
            }
        }
    }
}
