using AttentionReference.Forms;
using AttentionReference.Forms.Hybrid;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>
/// Runs nats_l on the device (Kernels/NatsL.cl explains the decomposition): the call is bound through the form's
/// contract and read into the CPU form's options (<see cref="NatsLOptions"/>, same errors); the Gated DeltaNet branch
/// runs WyChunkwise.cl's gated_delta_rule kernels one routing chunk at a time plus NatsL.cl's end-of-chunk rule; the
/// softmax branch runs the backend's softmax, tiled and causal, over the softmax-routed keys (the call it is given, the
/// softmax form's own contract) and NatsL.cl folds in the own chunk's keys of Gated DeltaNet chunks.
/// </summary>
internal static class NatsLKernels
{
    /// <summary>Options the kernels implement; anything else is refused rather than silently ignored.</summary>
    private static readonly HashSet<string> s_supported = new(["chunk_size", "scale", "decay_for_non_gdn_blocks"], StringComparer.Ordinal);

    // Work-items per group of WyChunkwise.cl's delta_chunked, as DeltaKernels launches it.
    private const int GroupSize = 64;

    /// <summary>
    /// nats_l's <paramref name="variant"/>; <paramref name="softmaxTiled"/> runs the softmax form's tiled variant on this
    /// backend (inputs and parameters as the softmax contract names them; o and lse back).
    /// </summary>
    public static IReadOnlyDictionary<string, Tensor> Run(OpenClContext context, Precision precision, Form form, string variant,
        IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters,
        Func<IReadOnlyDictionary<string, Tensor>, FormParameters, IReadOnlyDictionary<string, Tensor>> softmaxTiled)
    {
        KernelSupport.Require("nats_l", variant, ["recurrent", "chunked"], parameters, s_supported);
        Problem problem = form.Contract.Bind(inputs, parameters);
        NatsLOptions options = NatsLOptions.Read(problem);
        var (batch, time, heads, dk, dv) = (problem["B"], problem["T"], problem["H"], problem["K"], problem["V"]);
        if ((long)batch * time * heads * dk * dv == 0)
        {
            // Nothing to launch: the reference's (empty or state-only) result.
            return form.Run("recurrent", problem);
        }
        Tensor q = problem.Input("q"), k = problem.Input("k"), v = problem.Input("v"), g = problem.Input("g"), beta = problem.Input("beta");
        Tensor routes = options.Routes;
        int chunkSize = options.ChunkSize, chunks = routes.Dim(1);
        double scale = options.Scale;
        int[] routeInts = routes.Data.Select(r => (int)r).ToArray();

        using DeviceBuffer qBuffer = context.Upload(q.Data, precision), kBuffer = context.Upload(k.Data, precision),
            vBuffer = context.Upload(v.Data, precision), routeBuffer = context.UploadInts(routeInts);
        Tensor oLinear, finalState;
        using (DeviceBuffer gBuffer = context.Upload(g.Data, precision), betaBuffer = context.Upload(beta.Data, precision))
        {
            (oLinear, finalState) = Linear(context, precision, variant == "chunked", qBuffer, kBuffer, vBuffer, gBuffer, betaBuffer,
                routeBuffer, problem.Optional("initial_state"), options, batch, time, heads, dk, dv, chunks, chunkSize, scale);
        }
        Tensor oSoftmax = Softmax(context, precision, softmaxTiled, q, k, v, qBuffer, kBuffer, vBuffer, routeBuffer, routes,
            batch, time, heads, dk, dv, chunks, chunkSize, scale);
        return new Dictionary<string, Tensor> { ["o_linear"] = oLinear, ["o_softmax"] = oSoftmax, ["final_state"] = finalState };
    }

    /// <summary>The Gated DeltaNet branch, one routing chunk per launch of WyChunkwise.cl, then the end-of-chunk rule.</summary>
    private static (Tensor O, Tensor FinalState) Linear(OpenClContext context, Precision precision, bool chunked,
        DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer g, DeviceBuffer beta, DeviceBuffer routes, Tensor? initialState, NatsLOptions options,
        int batch, int time, int heads, int dk, int dv, int chunks, int chunkSize, double scale)
    {
        int c = Math.Min(chunkSize, time); // the WY chunk: one routing chunk is one WY chunk
        int stateLength = checked(batch * heads * dk * dv);
        long scratchLength = chunked ? (long)batch * heads * ((long)c * dk + 3L * c * c + (long)c * dk + (long)c * dv) : 1;
        using DeviceBuffer sBar = context.UploadOrZeros(initialState?.Data, stateLength, precision),
            sRun = context.Allocate(stateLength, precision), o = context.Allocate(checked(batch * time * heads * dv), precision),
            scratch = context.Allocate(checked((int)scratchLength), precision);
        using OpenClKernel delta = context.Kernel("WyChunkwise.cl", chunked ? "delta_chunked" : "delta_recurrent", precision);
        using OpenClKernel endOfChunk = context.Kernel("NatsL.cl", "nats_end_of_chunk", precision);
        for (int chunk = 0; chunk < chunks; chunk++)
        {
            int start = chunk * chunkSize, m = Math.Min(chunkSize, time - start);
            // Sequence n = batch entry n over the chunk's tokens, (batch, start, length) as the kernels read them.
            int[] sequences = Enumerable.Range(0, batch).SelectMany(b => new[] { b, start, m }).ToArray();
            using DeviceBuffer seqs = context.UploadInts(sequences);
            delta.Arg(0, q).Arg(1, k).Arg(2, v).Arg(3, beta).Arg(4, g).Arg(5, g).Arg(6, sBar).Arg(7, seqs).Arg(8, o).Arg(9, sRun);
            uint next = 10;
            if (chunked)
            {
                delta.Arg(next++, scratch);
            }
            // N = B, HV = H, headwise β, decay mode 1 (g), from S̄.
            delta.Arg(next++, batch).Arg(next++, time).Arg(next++, heads).Arg(next++, heads).Arg(next++, dk).Arg(next++, dv)
                .Arg(next++, 0).Arg(next++, 1).Arg(next++, 1).Arg(next++, scale, precision);
            if (chunked)
            {
                delta.Arg(next, c);
                context.Run(delta, (long)batch * heads * GroupSize, local: GroupSize);
            }
            else
            {
                context.Run(delta, (long)batch * heads * dv, local: 0);
            }
            endOfChunk.Arg(0, sBar).Arg(1, sRun).Arg(2, g).Arg(3, routes)
                .Arg(4, batch).Arg(5, time).Arg(6, heads).Arg(7, dk).Arg(8, dv).Arg(9, chunks)
                .Arg(10, chunk).Arg(11, start).Arg(12, m).Arg(13, m == chunkSize ? 1 : 0)
                .Arg(14, options.DecayForNonGdnBlocks ? 1 : 0, precision);
            context.Run(endOfChunk, (long)batch * heads * dv, local: 0);
        }
        return (new Tensor([batch, time, heads, dv], context.Download(o)), new Tensor([batch, heads, dk, dv], context.Download(sBar)));
    }

    /// <summary>The softmax branch: causal softmax over the softmax-routed keys, then the own chunk of Gated DeltaNet chunks folded in.</summary>
    private static Tensor Softmax(OpenClContext context, Precision precision,
        Func<IReadOnlyDictionary<string, Tensor>, FormParameters, IReadOnlyDictionary<string, Tensor>> softmaxTiled, Tensor q, Tensor k, Tensor v,
        DeviceBuffer qBuffer, DeviceBuffer kBuffer, DeviceBuffer vBuffer, DeviceBuffer routeBuffer, Tensor routes,
        int batch, int time, int heads, int dk, int dv, int chunks, int chunkSize, double scale)
    {
        // A1_t: key j is kept when its chunk is softmax-routed, for every query ([B,H,1,T] broadcast over queries).
        var keyMask = new double[batch * heads * time];
        for (int b = 0; b < batch; b++)
        {
            for (int h = 0; h < heads; h++)
            {
                for (int j = 0; j < time; j++)
                {
                    keyMask[(b * heads + h) * time + j] = routes[b, j / chunkSize, h];
                }
            }
        }
        var attended = softmaxTiled(
            new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["mask"] = new Tensor([batch, heads, 1, time], keyMask) },
            new FormParameters(new Dictionary<string, string>
            {
                ["causal"] = "true", ["mask_type"] = "bool", ["scale"] = scale.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
            }));
        Tensor o1 = attended["o"], lse1 = attended["lse"];

        // A2_t: the own chunk's keys where that chunk is a Gated DeltaNet chunk.
        using DeviceBuffer o = context.Upload(o1.Data, precision), lse = context.Upload(lse1.Data, precision);
        using OpenClKernel ownChunk = context.Kernel("NatsL.cl", "nats_softmax_own_chunk", precision);
        ownChunk.Arg(0, qBuffer).Arg(1, kBuffer).Arg(2, vBuffer).Arg(3, routeBuffer).Arg(4, o).Arg(5, lse)
            .Arg(6, batch).Arg(7, time).Arg(8, heads).Arg(9, dk).Arg(10, dv).Arg(11, chunks).Arg(12, chunkSize)
            .Arg(13, scale, precision);
        context.Run(ownChunk, (long)batch * time * heads, local: 64);
        return new Tensor([batch, time, heads, dv], context.Download(o));
    }
}
