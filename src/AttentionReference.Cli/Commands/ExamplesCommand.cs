using System.CommandLine;
using AttentionReference.Forms;
using AttentionReference.Golden;
using AttentionReference.IO;
using AttentionReference.Tensors;

namespace AttentionReference.Cli.Commands;

/// <summary>
/// <c>attnref examples write [--dir examples]</c> (hidden): writes the README's example, a causal GQA softmax input
/// and two candidates as a kernel would dump them in f32: one right, one with a single corrupted element.
/// </summary>
internal static class ExamplesCommand
{
    /// <summary>The corrupted element of the wrong candidate: o[b=0, t=37, h=2, d=5].</summary>
    public static readonly int[] CorruptedIndex = [0, 37, 2, 5];

    public static Command Create(CliContext context)
    {
        var dir = Shared.PathOption(new Option<string>("--dir") { Description = "the examples folder", DefaultValueFactory = _ => "examples" });
        var command = new Command("examples", "write the README's example files") { Hidden = true };
        var write = new Command("write", "write examples/softmax/{input,candidate_good,candidate_bad}.safetensors") { dir };
        write.SetAction(parsed => context.Guard(() =>
        {
            string folder = Path.Combine(parsed.GetValue(dir)!, "softmax");
            AtomicFile.CreateFolder(folder);
            var random = GoldenRandom.For("examples/softmax");
            var input = new TensorFile()
                .Add("q", random.Normal(1, 1, 64, 4, 32).RoundTo(DType.F32))
                .Add("k", random.Normal(1, 1, 64, 2, 32).RoundTo(DType.F32))
                .Add("v", random.Normal(1, 1, 64, 2, 32).RoundTo(DType.F32));
            input.Metadata["form"] = "softmax";
            input.Metadata["causal"] = "true";
            TensorFiles.Write(Path.Combine(folder, "input.safetensors"), input);

            RunResult result = FormRunner.Run(FormCatalog.Find("softmax"), input.Tensors, input.Metadata, new RunOptions());
            Tensor o = result.Outputs["o"].RoundTo(DType.F32), lse = result.Outputs["lse"].RoundTo(DType.F32);
            TensorFiles.Write(Path.Combine(folder, "candidate_good.safetensors"), new TensorFile().Add("o", o).Add("lse", lse));

            // A plausible kernel bug: one output element off by a tenth of the output's typical size.
            Tensor bad = o.Clone();
            bad[CorruptedIndex] = DType.F32.Round(bad[CorruptedIndex] + 0.1);
            TensorFiles.Write(Path.Combine(folder, "candidate_bad.safetensors"), new TensorFile().Add("o", bad).Add("lse", lse));
            context.Out.WriteLine($"wrote the softmax example to {folder}");
            return Attnref.Ok;
        }));
        command.Add(write);
        return command;
    }
}
