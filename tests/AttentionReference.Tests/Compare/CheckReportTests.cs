using System.Text.Json;
using AttentionReference.Compare;
using AttentionReference.Tensors;

namespace AttentionReference.Tests.Compare;

public sealed class CheckReportTests
{
    private static readonly string[] Bthd = ["b", "t", "h", "d"];

    private static (CheckReport Report, TensorComparison O, TensorComparison Lse) FailingReport()
    {
        var o = new Tensor([1, 4, 2, 3], ComparerTests.Gaussian(11, 24));
        var candidateO = o.RoundTo(DType.F32);
        candidateO[0, 2, 1, 0] = double.NaN;
        var lse = new Tensor([1, 4, 2], ComparerTests.Gaussian(12, 8));
        lse[0, 0, 1] = double.NegativeInfinity; // a row with no allowed keys
        var oResult = Comparer.Compare("o", o, candidateO, ToleranceProfile.F32, Bthd);
        var lseResult = Comparer.Compare("lse", lse, lse.RoundTo(DType.F32), ToleranceProfile.F32, ["b", "t", "h"]);
        var report = new CheckReport
        {
            Form = "softmax_attention",
            Variant = "flash",
            Backend = "cpu",
            Parameters = new Dictionary<string, string> { ["causal"] = "true", ["scale"] = "0.5" },
            Profile = ToleranceProfile.F32,
            Tensors = [oResult, lseResult],
            MissingOutputs = ["dq"],
            IgnoredTensors = ["q", "scratch"],
        };
        return (report, oResult, lseResult);
    }

    [Fact]
    public void The_JSON_report_parses_back_and_holds_every_field()
    {
        var (report, o, lse) = FailingReport();
        using var document = JsonDocument.Parse(report.ToJson());
        var root = document.RootElement;

        Assert.Equal("softmax_attention", root.GetProperty("form").GetString());
        Assert.Equal("flash", root.GetProperty("variant").GetString());
        Assert.Equal("cpu", root.GetProperty("backend").GetString());
        Assert.Equal("true", root.GetProperty("parameters").GetProperty("causal").GetString());
        Assert.Equal("0.5", root.GetProperty("parameters").GetProperty("scale").GetString());
        Assert.Equal("f32", root.GetProperty("profile").GetString());
        var f32 = root.GetProperty("profiles").GetProperty("f32");
        Assert.Equal(ToleranceProfile.F32.NormwiseRelative, f32.GetProperty("normwiseRelative").GetDouble());
        Assert.Equal(ToleranceProfile.F32.ElementRelative, f32.GetProperty("elementRelative").GetDouble());
        Assert.Equal(ToleranceProfile.F32.Reason, f32.GetProperty("reason").GetString());
        Assert.False(root.GetProperty("passed").GetBoolean());
        Assert.Equal<string?>(["dq"], root.GetProperty("missingOutputs").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal<string?>(["q", "scratch"], root.GetProperty("ignoredTensors").EnumerateArray().Select(e => e.GetString()));

        var tensors = root.GetProperty("tensors");
        Assert.Equal(2, tensors.GetArrayLength());
        var jo = tensors[0];
        Assert.Equal("o", jo.GetProperty("name").GetString());
        Assert.Equal<int>([1, 4, 2, 3], jo.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(Bthd, jo.GetProperty("axes").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal("f64", jo.GetProperty("referenceDType").GetString());
        Assert.Equal("f32", jo.GetProperty("candidateDType").GetString());
        Assert.False(jo.GetProperty("passed").GetBoolean());
        Assert.Equal(24, jo.GetProperty("elements").GetInt32());
        Assert.Equal(23, jo.GetProperty("compared").GetInt32());
        Assert.Equal(1, jo.GetProperty("nonFiniteMismatches").GetInt32());
        // Numbers round-trip exactly (shortest round-trip form).
        Assert.Equal(o.MaxAbsoluteError, jo.GetProperty("maxAbsError").GetDouble());
        Assert.Equal(o.NormwiseRelativeError, jo.GetProperty("normwiseRelError").GetDouble());
        Assert.Equal(o.ReferenceRms, jo.GetProperty("referenceRms").GetDouble());
        Assert.Equal(o.MaxUlps, jo.GetProperty("maxUlps").GetDouble());

        var worst = jo.GetProperty("worst")[0];
        Assert.Equal("o[b=0,t=2,h=1,d=0]", worst.GetProperty("at").GetString());
        Assert.Equal<int>([0, 2, 1, 0], worst.GetProperty("index").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(o.Worst[0].Reference, worst.GetProperty("reference").GetDouble());
        Assert.Equal("NaN", worst.GetProperty("candidate").GetString()); // JSON has no NaN: written as a string
        Assert.Equal("Infinity", worst.GetProperty("tolerances").GetString());
        Assert.True(worst.GetProperty("nonFiniteMismatch").GetBoolean());

        var jlse = tensors[1];
        Assert.True(jlse.GetProperty("passed").GetBoolean());
        Assert.Equal(lse.MatchingNonFiniteCount, jlse.GetProperty("matchingNonFinite").GetInt32());
        Assert.Equal(1, jlse.GetProperty("matchingNonFinite").GetInt32());
    }

    [Fact]
    public void A_report_passes_when_every_compared_tensor_passes_and_something_was_compared()
    {
        var (failing, _, lse) = FailingReport();
        Assert.False(failing.Passed);
        var passing = new CheckReport
        {
            Form = failing.Form,
            Backend = failing.Backend,
            Parameters = failing.Parameters,
            Tensors = [lse],
            MissingOutputs = ["o"], // a missing output is not a failure
        };
        Assert.True(passing.Passed);
        var empty = new CheckReport { Form = "f", Backend = "cpu", Parameters = new Dictionary<string, string>(), Tensors = [] };
        Assert.False(empty.Passed);
        using var document = JsonDocument.Parse(passing.ToJson());
        Assert.Equal(JsonValueKind.Null, document.RootElement.GetProperty("variant").ValueKind);
        Assert.Equal(JsonValueKind.Null, document.RootElement.GetProperty("profile").ValueKind);
        Assert.True(document.RootElement.GetProperty("profiles").TryGetProperty("f32", out _)); // the tensor's own
    }

    [Fact]
    public void The_JSON_report_is_the_same_every_time() =>
        Assert.Equal(FailingReport().Report.ToJson(), FailingReport().Report.ToJson());
}
