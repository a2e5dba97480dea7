using AttentionReference.Forms;
using AttentionReference.Tensors;

namespace AttentionReference.Golden.Cases;

/// <summary>
/// Golden cases of the backward pass: chosen forward cases again, named "&lt;case&gt;_grad", with an upstream gradient
/// for every output the form returns (do, dlse, dfinal_state, ...: the contract's cotangents), drawn at unit scale.
/// Their files hold the inputs, the upstream gradients, the outputs and the gradient of every differentiable input
/// (dq, dk, dv, dgk, dinitial_state, ...), so a kernel's backward can be checked against them as its forward is.
/// </summary>
internal static class GradientCases
{
    /// <summary>The forward cases whose gradients are pinned: each form's variants, then its options and edges.</summary>
    private static readonly (string Form, string Case)[] s_chosen =
    [
        ("softmax", "full"), ("softmax", "causal_gqa"), ("softmax", "alibi_per_batch_softcap"), ("softmax", "mask_bool"),
        ("softmax", "mqa_empty_rows"), ("softmax", "window_left_right"), ("softmax", "varlen_causal"),
        ("softmax", "tiled_causal_mask"), ("softmax", "tiled_varlen_alibi"), ("softmax", "tiled_window_gqa"),
        ("softmax", "split_mask_softcap"), ("softmax", "decode_paged"),
        ("sparse", "block_per_head"), ("sparse", "longformer_causal_cross"), ("sparse", "bigbird"),
        ("mla", "naive"), ("mla", "absorbed_causal_wkv_b"), ("mla", "absorbed_empty_rows_scale"),
        ("forgetting", "naive_gqa_scale"), ("forgetting", "naive_varlen"), ("forgetting", "tiled_strong_gates"),
        ("linear", "identity_recurrent"), ("linear", "identity_parallel"), ("linear", "identity_chunked"), ("linear", "elu1_normalized"),
        ("linear", "relu"), ("linear", "taylor2_normalized"), ("linear", "performer"), ("linear", "non_causal"),
        ("linear", "varlen_initial_state"),
        ("rwkv6", "recurrent"), ("rwkv6", "parallel"), ("rwkv6", "chunked_c3"), ("rwkv6", "strong_decay_parallel"), ("rwkv6", "varlen_chunked"),
        ("mlstm", "recurrent"), ("mlstm", "parallel"), ("mlstm", "chunked_c3"), ("mlstm", "eps_recurrent"), ("mlstm", "strong_forget_chunked"),
        ("mlstm", "varlen_chunked"),
        ("retention", "recurrent"), ("retention", "chunked"), ("retention", "gamma_and_scale"),
        ("simple_gla", "recurrent"), ("simple_gla", "parallel"), ("simple_gla", "chunked"), ("simple_gla", "strong_decay"),
        ("simple_gla", "varlen_initial_state"),
        ("gla", "recurrent"), ("gla", "parallel"), ("gla", "chunked"), ("gla", "gv"), ("gla", "strong_decay_chunked"),
        ("gla", "varlen_initial_state"),
        ("hgrn2", "recurrent"), ("hgrn2", "chunked"), ("hgrn2", "mixed_gates"),
        ("delta_rule", "recurrent"), ("delta_rule", "chunked_c3"), ("delta_rule", "parallel"), ("delta_rule", "per_value_beta_chunked"),
        ("delta_rule", "varlen_initial_state"),
        ("gated_delta_rule", "recurrent"), ("gated_delta_rule", "chunked_c5"), ("gated_delta_rule", "gva_per_value_beta"),
        ("gated_delta_rule", "strong_gates"), ("gated_delta_rule", "varlen_initial_state"),
        ("kda", "recurrent"), ("kda", "chunked_c3"), ("kda", "gva_fla_names"), ("kda", "strong_gates_varlen"),
        ("rwkv7", "recurrent"), ("rwkv7", "chunked_c3"), ("rwkv7", "varlen_initial_state"),
        ("s4d", "recurrent"), ("s4d", "convolution"), ("s4d", "fft"), ("s4d", "real_a_recurrent"),
        ("h3", "recurrent"), ("h3", "convolution"),
        ("mamba", "recurrent_grouped_softplus_z_state"), ("mamba", "recurrent_shared_bc"), ("mamba", "scan_s3_strong_decay"),
        ("mamba", "scan_s3_varlen_initial_state"),
        ("ssd", "recurrent"), ("ssd", "quadratic"), ("ssd", "chunked_q3_d_per_channel_z_softplus"), ("ssd", "chunked_q4_varlen_initial_state"),
        ("power", "recurrent"), ("power", "quadratic"), ("power", "chunked"), ("power", "deg4_gated"), ("power", "varlen_initial_state"),
        ("nats_l", "recurrent"), ("nats_l", "chunked"), ("nats_l", "initial_state"),
        ("based", "recurrent"), ("based", "parallel"), ("based", "chunked"), ("based", "varlen_initial_state"),
    ];

    public static IEnumerable<GoldenCase> All(IEnumerable<GoldenCase> forward)
    {
        var byId = forward.ToDictionary(c => c.Id, StringComparer.Ordinal);
        return s_chosen.Select(c => WithUpstreamGradients(byId[$"{c.Form}/{c.Case}"]));
    }

    /// <summary>The case with its inputs, then one unit-scale upstream gradient per output of the forward run.</summary>
    private static GoldenCase WithUpstreamGradients(GoldenCase forward) => forward with
    {
        Name = forward.Name + GoldenCase.GradientSuffix,
        MakeInputs = random =>
        {
            var inputs = forward.MakeInputs(random);
            var form = (Form)FormCatalog.Find(forward.Form);
            var outputs = FormRunner.Run(form, inputs, forward.Parameters, new RunOptions { Variant = forward.Variant }).Outputs;
            return new Dictionary<string, Tensor>(inputs.Concat(form.Contract.UpstreamGradients(outputs, shape => random.Normal(1, shape))),
                StringComparer.Ordinal);
        },
    };
}
