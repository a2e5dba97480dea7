using AttentionReference.Golden;
using AttentionReference.IO;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Golden;

public sealed class GoldenTests
{
    [Fact]
    public void Every_shipped_golden_case_verifies()
    {
        var results = GoldenStore.Verify(RepoPaths.Of("golden"));
        Assert.NotEmpty(results);
        Assert.All(results, r => Assert.True(r.Passed, $"{r.Id}: {r.Problem ?? string.Join("; ", r.Comparisons.Where(c => !c.Passed))}"));
        // Every case defined in code is shipped (Verify reports the missing ones as failures; this says it plainly).
        Assert.Equal(GoldenCases.All.Select(c => c.Id), results.Select(r => r.Id));
    }

    [Fact]
    public void A_golden_file_changed_outside_golden_write_fails_its_hash()
    {
        using var temp = CopyOfGoldens();
        string file = Path.Combine(temp.Path, "softmax", "full.safetensors");
        byte[] bytes = File.ReadAllBytes(file);
        bytes[^1] ^= 1;
        File.WriteAllBytes(file, bytes);
        var result = GoldenStore.Verify(temp.Path).Single(r => r.Id == "softmax/full");
        Assert.False(result.Passed);
        Assert.Contains("SHA-256", result.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void A_wrong_expected_output_fails_even_with_a_matching_hash()
    {
        using var temp = CopyOfGoldens();
        string file = Path.Combine(temp.Path, "softmax", "causal.safetensors");
        var golden = SafeTensors.Read(file);
        golden["o"].Data[3] += 1e-9; // far above the f64 profile's per-element bound of 5e-12·(|r| + rms r)
        SafeTensors.Write(file, golden);
        RewriteHash(temp.Path, "softmax/causal.safetensors", file);
        var result = GoldenStore.Verify(temp.Path).Single(r => r.Id == "softmax/causal");
        Assert.Null(result.Problem);
        Assert.False(result.Passed);
    }

    [Fact]
    public void Golden_inputs_are_the_same_on_every_run()
    {
        // The inputs come from our own SplitMix64 seeded by the case id, never from System.Random.
        foreach (GoldenCase c in GoldenCases.All)
        {
            var first = c.Inputs();
            var second = c.Inputs();
            Assert.All(first, kv => Assert.Equal(kv.Value.Data, second[kv.Key].Data));
        }
    }

    private static TempFolder CopyOfGoldens()
    {
        var temp = new TempFolder();
        foreach (string source in Directory.GetFiles(RepoPaths.Of("golden"), "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(temp.Path, Path.GetRelativePath(RepoPaths.Of("golden"), source));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(source, target);
        }
        return temp;
    }

    private static void RewriteHash(string directory, string relative, string file)
    {
        string manifest = Path.Combine(directory, GoldenStore.ManifestName);
        string text = File.ReadAllText(manifest);
        using var json = System.Text.Json.JsonDocument.Parse(text);
        string old = json.RootElement.GetProperty("cases").EnumerateArray()
            .Single(c => c.GetProperty("file").GetString() == relative).GetProperty("sha256").GetString()!;
        string fresh = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(file)));
        File.WriteAllText(manifest, text.Replace(old, fresh, StringComparison.Ordinal));
    }
}

/// <summary>Verifying goldens on a backend that lacks some forms skips those cases instead of failing them.</summary>
public sealed class GoldenSkipTests
{
    private sealed class SoftmaxOnlyBackend : AttentionReference.Forms.IBackend
    {
        public string Name => "softmax-only";

        public string DeviceName => "the CPU reference for softmax only";

        public IReadOnlyDictionary<string, AttentionReference.Tensors.Tensor> Run(AttentionReference.Forms.IForm form, string variant,
            IReadOnlyDictionary<string, AttentionReference.Tensors.Tensor> inputs, AttentionReference.Forms.FormParameters parameters) =>
            form.Name == "softmax"
                ? AttentionReference.Forms.CpuBackend.Instance.Run(form, variant, inputs, parameters)
                : throw new AttentionReference.Tensors.InputException($"{form.Name} is not implemented here") { Unsupported = true };
    }

    [Fact]
    public void Cases_the_backend_cannot_compute_are_skipped_and_the_rest_verified()
    {
        // Gradient goldens are skipped on any backend but the CPU reference, which alone computes gradients.
        var results = GoldenStore.Verify(RepoPaths.Of("golden"), new SoftmaxOnlyBackend());
        static bool Computable(GoldenResult r) => r.Id.StartsWith("softmax/", StringComparison.Ordinal) && !r.IsGradient;
        Assert.Contains(results, Computable);
        Assert.All(results.Where(Computable), r => Assert.True(r.Passed, r.Id));
        Assert.All(results.Where(r => !Computable(r)), r =>
        {
            Assert.False(r.Failed, r.Id);
            Assert.NotNull(r.Skipped);
        });
    }
}

/// <summary>
/// Every golden holds in every variant of its form, at several chunk and block sizes, not only in the variant that
/// wrote it: a bug in one variant under one option (an initial state, cu_seqlens) cannot hide behind the goldens of the
/// other variants.
/// </summary>
public sealed class GoldenEveryVariantTests
{
    /// <summary>The parameters that set an algorithm's granularity, never its result.</summary>
    private static readonly string[] s_granularity = ["chunk_size", "block_size", "block_q", "block_k", "num_splits"];

    /// <summary>Runs <see cref="_variant"/> instead of the golden's own variant, with every granularity parameter at <see cref="_size"/>.</summary>
    private sealed class OtherVariantBackend(string variant, int size) : AttentionReference.Forms.IBackend
    {
        private readonly string _variant = variant;
        private readonly int _size = size;

        public string Name => $"cpu, variant {_variant}, sizes {_size}";

        public string DeviceName => "the CPU reference";

        public IReadOnlyDictionary<string, AttentionReference.Tensors.Tensor> Run(AttentionReference.Forms.IForm form, string variant,
            IReadOnlyDictionary<string, AttentionReference.Tensors.Tensor> inputs, AttentionReference.Forms.FormParameters parameters)
        {
            if (!form.Variants.Contains(_variant) || !SameFunction(form.Name, variant, _variant, parameters))
            {
                throw new AttentionReference.Tensors.InputException($"{form.Name} {variant} is not {_variant}") { Unsupported = true };
            }
            // nats_l routes whole chunks and sparse's blocks are its layout: there the sizes are part of the function.
            foreach (var spec in form.Parameters.Where(p => s_granularity.Contains(p.Name) && form.Name is not ("nats_l" or "sparse")))
            {
                parameters = parameters.With(spec.Name, _size.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
            return form.Run(_variant, inputs, parameters);
        }

        /// <summary>
        /// Whether two variants compute the same function of the same inputs to the f64 profile: sparse's variants are
        /// different patterns; softmax's decode reads a KV cache that the other variants do not take; power's recurrent
        /// variant forms (q·k)^p as φ(q)·φ(k), a sum of signed terms whose rounding is relative to (|q|·|k|)^p, not to
        /// the output, so at p ≥ 4 it meets another variant's golden only to that magnitude (PowerTests holds the two
        /// paths to each other under that bound).
        /// </summary>
        private static bool SameFunction(string form, string written, string other, AttentionReference.Forms.FormParameters parameters) => form switch
        {
            "sparse" => written == other,
            "softmax" => (written == "decode") == (other == "decode"),
            "power" => written == other || (written != "recurrent" && other != "recurrent")
                || !int.TryParse(parameters.Values.GetValueOrDefault("deg", "2"), out int degree) || degree < 4,
            _ => true,
        };
    }

    public static TheoryData<string, int> VariantsAndSizes()
    {
        var data = new TheoryData<string, int>();
        foreach (string variant in AttentionReference.Forms.FormCatalog.All.SelectMany(f => f.Variants).Distinct().Order(StringComparer.Ordinal))
        {
            // int.MaxValue: issue #21's cause 6, a chunk, block or split count past the sequence is clamped to it
            // (it once sized scratch buffers by the parameter and ran out of memory or overflowed).
            foreach (int size in new[] { 1, 2, 5, 64, int.MaxValue })
            {
                data.Add(variant, size);
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(VariantsAndSizes))]
    public void Every_golden_holds_in_every_variant_of_its_form(string variant, int size)
    {
        var results = GoldenStore.Verify(RepoPaths.Of("golden"), new OtherVariantBackend(variant, size));
        Assert.All(results, r => Assert.False(r.Failed, $"{r.Id} in {variant}, sizes {size}: {r.Problem ?? string.Join("; ", r.Comparisons.Where(c => !c.Passed))}"));
        Assert.Contains(results, r => r.Skipped is null); // each variant verifies some golden
    }
}
