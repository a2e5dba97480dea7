using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.IO;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.Common;

/// <summary>
/// The shipped goldens of a form hold in every variant and at several chunk sizes, not only in the variant that wrote
/// them: a golden written by one variant then also checks the others on its inputs (varlen, initial states, strong
/// gates), where a bug in one variant would otherwise escape every golden.
/// </summary>
internal static class GoldenVariants
{
    /// <summary>The ids of the form's golden cases, for a [Theory]'s MemberData.</summary>
    public static TheoryData<string> Of(string form)
    {
        var data = new TheoryData<string>();
        foreach (var c in AttentionReference.Golden.GoldenCases.All.Where(c => c.Form == form))
        {
            data.Add(c.Id);
        }
        return data;
    }

    /// <summary>Asserts every variant of the case's form, at chunk sizes 1, 2, 5 and 64, reproduces each golden output within <paramref name="tolerance"/>.</summary>
    public static void AssertEveryVariantReproduces(string id, double tolerance)
    {
        TensorFile golden = TensorFiles.Read(RepoPaths.Of("golden", id + ".safetensors"));
        IForm form = FormCatalog.Find(id.Split('/')[0]);
        var inputs = golden.Metadata["inputs"].Split(',').ToDictionary(n => n, n => golden[n]);
        foreach (string variant in form.Variants)
        {
            foreach (int chunk in new[] { 1, 2, 5, 64 })
            {
                var overrides = new Dictionary<string, string> { ["chunk_size"] = chunk.ToString(CultureInfo.InvariantCulture) };
                var result = FormRunner.Run(form, inputs, golden.Metadata, new RunOptions { Variant = variant, Overrides = overrides });
                foreach (string output in golden.Metadata["outputs"].Split(','))
                {
                    TestTensors.AssertClose(result.Outputs[output], golden[output], tolerance, $"{id} {variant} C={chunk} {output}");
                }
            }
        }
    }
}
