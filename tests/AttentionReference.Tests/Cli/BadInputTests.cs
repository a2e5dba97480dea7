using System.Buffers.Binary;
using System.Text;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Cli;

/// <summary>
/// Bad input of every kind: exit code 2, exactly one line on stderr naming the file and the tensor, and no output
/// file (nor a temporary one) left behind. The files are built byte by byte from the safetensors spec.
/// </summary>
public sealed class BadInputTests
{
    // A valid softmax input: q [1,2,1,4], k [1,2,1,4], v [1,2,1,4] in F64, 64 bytes each.
    private static readonly (string Name, string DType, int[] Shape)[] Valid =
        [("q", "F64", [1, 2, 1, 4]), ("k", "F64", [1, 2, 1, 4]), ("v", "F64", [1, 2, 1, 4])];

    public static TheoryData<string, string> Cases => new()
    {
        { "truncated", "v" },
        { "offsets_past_end", "q" },
        { "unknown_dtype", "k" },
        { "wrong_shape", "k" },
        { "missing_tensor", "v" },
        { "duplicate_name", "q" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Bad_input_exits_2_with_one_line_naming_file_and_tensor_and_writes_nothing(string kind, string tensor)
    {
        using var temp = new TempFolder();
        string input = temp.File($"{kind}.safetensors");
        File.WriteAllBytes(input, Build(kind));
        string output = temp.File("out.safetensors");

        var outcome = CliRunner.Run("run", "softmax", "--in", input, "--out", output);

        Assert.Equal(2, outcome.ExitCode);
        string[] lines = outcome.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.Contains(input, lines[0], StringComparison.Ordinal);
        Assert.Contains($"'{tensor}'", lines[0], StringComparison.Ordinal);
        Assert.Equal([input], Directory.GetFiles(temp.Path)); // no output, no temporary file
    }

    [Fact]
    public void A_valid_file_built_the_same_way_runs()
    {
        // The control for the theory above: the builder itself makes good files, so each failure is the defect's.
        using var temp = new TempFolder();
        string input = temp.File("valid.safetensors");
        File.WriteAllBytes(input, Build("valid"));
        var outcome = CliRunner.Run("run", "softmax", "--in", input, "--out", temp.File("out.safetensors"));
        Assert.Equal(0, outcome.ExitCode);
        Assert.True(File.Exists(temp.File("out.safetensors")));
    }

    [Fact]
    public void An_unknown_parameter_on_the_command_line_exits_2()
    {
        var outcome = CliRunner.Run("run", "softmax", "--in", RepoPaths.Of("examples", "softmax", "input.safetensors"),
            "--out", Path.Combine(Path.GetTempPath(), "never-written.safetensors"), "--set", "casual=true");
        Assert.Equal(2, outcome.ExitCode);
        Assert.Contains("unknown parameter 'casual'", outcome.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_usage_exits_2_with_one_line()
    {
        var outcome = CliRunner.Run("check", "softmax", "--in");
        Assert.Equal(2, outcome.ExitCode);
        Assert.Single(outcome.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    private static byte[] Build(string kind)
    {
        var entries = new List<string>();
        long offset = 0;
        foreach (var (name, dtype, shape) in Valid)
        {
            if (kind == "missing_tensor" && name == "v")
            {
                continue;
            }
            string type = kind == "unknown_dtype" && name == "k" ? "F8_E4M3" : dtype;
            int[] dims = kind == "wrong_shape" && name == "k" ? [1, 2, 1, 3] : shape;
            long bytes = dims.Aggregate(1, (a, b) => a * b) * 8L;
            long end = kind == "offsets_past_end" && name == "q" ? 10_000 : offset + bytes;
            entries.Add($"\"{name}\":{{\"dtype\":\"{type}\",\"shape\":[{string.Join(",", dims)}],\"data_offsets\":[{offset},{end}]}}");
            offset += bytes;
        }
        if (kind == "duplicate_name")
        {
            entries.Add($"\"q\":{{\"dtype\":\"F64\",\"shape\":[0],\"data_offsets\":[{offset},{offset}]}}");
        }
        byte[] header = Encoding.UTF8.GetBytes("{" + string.Join(",", entries) + "}");
        var data = new byte[offset];
        for (int i = 0; i < data.Length / 8; i++)
        {
            BinaryPrimitives.WriteDoubleLittleEndian(data.AsSpan(i * 8), 0.25 * (i % 7) - 0.5);
        }
        byte[] file = [.. new byte[8], .. header, .. data];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)header.Length);
        return kind == "truncated" ? file[..^10] : file;
    }
}
