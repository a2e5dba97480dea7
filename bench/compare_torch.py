#!/usr/bin/env python3
"""Times PyTorch f64 next to attnref on the same inputs, in the same run, and prints the ratios.

For each form below: make f64 inputs (B,T,H,D layout, the bench's value distributions: normals, log-sigmoid gates,
sigmoid betas, L2-normalised delta-rule keys), write them to a safetensors file, time `attnref run` on that file
(its "computed in X s" line; --backend cpu or opencl), then time the PyTorch version of the same equations on
CUDA and on the CPU, and check that torch's o agrees with attnref's.

  softmax           SDPA with the math backend, is_causal=True            vs attnref softmax tiled (causal)
  linear, retention, a loop over t (recurrent) / over chunks (chunked)    vs attnref recurrent / chunked
  simple_gla, gla
  delta_rule,       the same; chunked = the WY/UT form with one
  gated_delta_rule  unit-triangular solve per chunk; kda recurrent only
  mamba             selective_scan_ref's loop over L                      vs attnref recurrent and scan
  ssd               ssd_minimal's four chunked steps / a loop over t      vs attnref chunked / recurrent
  power             (s q kᵀ)^p masked and normalised, one head at a time  vs attnref quadratic and chunked
  based             Taylor weights 1 + s + s²/2 normalised + window softmax, one head at a time
                                                                          vs attnref parallel, chunked, recurrent

The loops are written from FORMS.md's equations (o_t = scale * q_t^T S_t, after the update), vectorised over batch
and heads only, as a plain PyTorch user would write them (mamba and ssd: as state-spaces/mamba's own torch references,
selective_scan_ref and ssd_minimal, compute them). Shapes follow the bench (InputFactory.cs): mamba D = H*V channels,
N = 16; ssd P = V, N = K, one group. Needs python3 with torch and safetensors; no network.

  python3 bench/compare_torch.py --attnref .device/run/attnref/attnref --size gpu --backend opencl
  python3 bench/compare_torch.py --ours results.json     # times from `AttentionReference.Bench --cpu --json results.json`
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

SIZES = {  # B, T, H, K, V as in bench/AttentionReference.Bench/BenchSize.cs
    "tiny": (1, 64, 2, 16, 16),
    "small": (1, 512, 4, 64, 64),
    "layer": (1, 4096, 8, 128, 128),
    "gpu": (1, 8192, 32, 128, 128),
}
CHUNK = 64  # the forms' default chunk_size


# ---------------------------------------------------------------- inputs (the bench's distributions)

def make_inputs(form, B, T, H, K, V, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)
    u = lambda lo, hi, *shape: lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)
    if form == "mamba":  # mamba's layout [B, D, L]; S4D-Real A, dt in mamba's init range, no softplus
        D, N = H * V, 16
        A = -torch.arange(1, N + 1, dtype=torch.float64).repeat(D, 1)
        return {"u": n(B, D, T), "delta": u(0.001, 0.1, B, D, T), "A": A, "B": n(B, N, T), "C": n(B, N, T)}
    if form == "ssd":  # x [B,T,H,P], one group of B and C, Mamba-2's A range
        return {"x": n(B, T, H, V), "dt": u(0.001, 0.1, B, T, H), "A": -u(1, 16, H), "B": n(B, T, 1, K), "C": n(B, T, 1, K)}
    x = {"q": n(B, T, H, K), "k": n(B, T, H, K), "v": n(B, T, H, V)}
    if form == "simple_gla":
        x["g"] = F.logsigmoid(n(B, T, H))
    if form == "gla":
        x["gk"] = F.logsigmoid(n(B, T, H, K))
    if form in ("delta_rule", "gated_delta_rule", "kda"):
        x["k"] = F.normalize(x["k"], dim=-1)
        x["beta"] = torch.sigmoid(n(B, T, H))
    if form == "kda":
        x["gk"] = F.logsigmoid(n(B, T, H, K))
    if form == "gated_delta_rule":
        x["g"] = F.logsigmoid(n(B, T, H))
    return x


# ---------------------------------------------------------------- PyTorch versions of the equations

def sdpa_math(x):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    q, k, v = (x[n].transpose(1, 2) for n in ("q", "k", "v"))  # [B,H,T,D]
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)


def log_gate(x):
    """The log decay [B,T,H,K or 1]: gla's gk, simple_gla's g, retention's log(1 - 2^(-5-h)), none for linear."""
    if "gk" in x:
        return x["gk"]
    if "g" in x:
        return x["g"][..., None]
    B, T, H, _ = x["q"].shape
    if x.get("retention"):
        gamma = 1 - 2.0 ** (-5 - torch.arange(H, dtype=x["q"].dtype, device=x["q"].device))
        return torch.log(gamma).expand(B, T, H)[..., None]
    return x["q"].new_zeros(B, T, H, 1)


def gla_recurrent(x):
    """S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T;  o_t = scale * S_t^T q_t  (g per key, or per head broadcast)."""
    q, k, v = x["q"], x["k"], x["v"]
    B, T, H, K = q.shape
    gate = log_gate(x)
    scale = K ** -0.5
    S = q.new_zeros(B, H, K, v.shape[-1])
    o = torch.empty_like(v)
    for t in range(T):
        S = torch.exp(gate[:, t])[..., None] * S + k[:, t, :, :, None] * v[:, t, :, None, :]
        o[:, t] = scale * torch.einsum("bhk,bhkv->bhv", q[:, t], S)
    return o


def gla_chunked(x, C=CHUNK):
    """Per chunk: decays relative to the chunk start b = cumsum(g); intra-chunk scores masked causal, inter via S."""
    q, k, v = (x[n].transpose(1, 2) for n in ("q", "k", "v"))  # [B,H,T,D]
    gate = log_gate(x).transpose(1, 2)
    B, H, T, K = q.shape
    scale = K ** -0.5
    S = q.new_zeros(B, H, K, v.shape[-1])
    o = torch.empty_like(v)
    for s in range(0, T, C):
        qc, kc, vc, gc = q[:, :, s:s + C], k[:, :, s:s + C], v[:, :, s:s + C], gate[:, :, s:s + C]
        b = torch.cumsum(gc, dim=2)                      # log decay from the chunk start, per key
        qg, kg = qc * torch.exp(b), kc * torch.exp(-b)
        A = torch.tril(qg @ kg.transpose(-1, -2))        # includes the diagonal
        o[:, :, s:s + C] = scale * (qg @ S + A @ vc)
        last = b[:, :, -1:]
        S = torch.exp(last).transpose(-1, -2) * S + (kc * torch.exp(last - b)).transpose(-1, -2) @ vc
    return o.transpose(1, 2)


def delta_recurrent(x):
    """(gated) S_t = exp(g_t) S_{t-1};  u_t = v_t - S_t^T k_t;  S_t += beta_t k_t u_t^T;  o_t = scale * S_t^T q_t."""
    q, k, v, beta = x["q"], x["k"], x["v"], x["beta"]
    B, T, H, K = q.shape
    scale = K ** -0.5
    S = q.new_zeros(B, H, K, v.shape[-1])
    o = torch.empty_like(v)
    for t in range(T):
        if "g" in x:
            S = torch.exp(x["g"][:, t])[..., None, None] * S
        if "gk" in x:
            S = torch.exp(x["gk"][:, t])[..., None] * S
        u = v[:, t] - torch.einsum("bhk,bhkv->bhv", k[:, t], S)
        S = S + beta[:, t, :, None, None] * k[:, t, :, :, None] * u[:, :, None, :]
        o[:, t] = scale * torch.einsum("bhk,bhkv->bhv", q[:, t], S)
    return o


def delta_chunked(x, C=CHUNK):
    """WY/UT per chunk: T = (I + tril(diag(beta) K K^T * Gamma, -1))^-1, W = T diag(beta) exp(b) K, U = T diag(beta) V,
    u = U - W S, o = scale (exp(b) Q S + tril(Q K^T * Gamma) u), S = exp(b_C) S + (exp(b_C - b) K)^T u."""
    q, k, v = (x[n].transpose(1, 2) for n in ("q", "k", "v"))
    beta = x["beta"].transpose(1, 2)[..., None]          # [B,H,T,1]
    g = x["g"].transpose(1, 2) if "g" in x else torch.zeros_like(x["beta"]).transpose(1, 2)
    B, H, T, K = q.shape
    scale = K ** -0.5
    S = q.new_zeros(B, H, K, v.shape[-1])
    o = torch.empty_like(v)
    for s in range(0, T, C):
        qc, kc, vc, bc = q[:, :, s:s + C], k[:, :, s:s + C], v[:, :, s:s + C], beta[:, :, s:s + C]
        b = torch.cumsum(g[:, :, s:s + C], dim=2)[..., None]   # [B,H,c,1]
        gamma = torch.exp(b - b.transpose(-1, -2))              # exp(b_i - b_j); used for i >= j only
        c = qc.shape[2]
        eye = torch.eye(c, dtype=q.dtype, device=q.device)
        L = eye + torch.tril((bc * kc) @ kc.transpose(-1, -2) * gamma, -1)
        Tm = torch.linalg.solve_triangular(L, eye.expand_as(L), upper=False, unitriangular=True)
        W, U = Tm @ (bc * torch.exp(b) * kc), Tm @ (bc * vc)
        u = U - W @ S
        o[:, :, s:s + C] = scale * ((qc * torch.exp(b)) @ S + torch.tril(qc @ kc.transpose(-1, -2) * gamma) @ u)
        S = torch.exp(b[:, :, -1:]) * S + (kc * torch.exp(b[:, :, -1:] - b)).transpose(-1, -2) @ u
    return o.transpose(1, 2)


def mamba_recurrent(x):
    """selective_scan_ref: x_t = exp(delta_t A) x_{t-1} + delta_t B_t u_t;  y_t = C_t . x_t  (per channel d, state n)."""
    u, delta, A, Bm, Cm = x["u"], x["delta"], x["A"], x["B"], x["C"]
    Bsz, D, L = u.shape
    state = u.new_zeros(Bsz, D, A.shape[1])
    y = torch.empty_like(u)
    for t in range(L):
        state = torch.exp(delta[:, :, t, None] * A) * state + (delta[:, :, t] * u[:, :, t])[..., None] * Bm[:, None, :, t]
        y[:, :, t] = (state * Cm[:, None, :, t]).sum(-1)
    return y


def ssd_recurrent(x):
    """h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T (P x N per head);  y_t = h_t C_t."""
    X, dt, A, Bm, Cm = x["x"], x["dt"], x["A"], x["B"][:, :, 0], x["C"][:, :, 0]
    Bsz, T, H, P = X.shape
    h = X.new_zeros(Bsz, H, P, Bm.shape[-1])
    y = torch.empty_like(X)
    for t in range(T):
        h = torch.exp(dt[:, t] * A)[..., None, None] * h + (dt[:, t, :, None] * X[:, t])[..., None] * Bm[:, t, None, None, :]
        y[:, t] = torch.einsum("bhpn,bn->bhp", h, Cm[:, t])
    return y


def segsum(a):
    """segsum(a)[..., i, j] = a_{j+1} + ... + a_i for j <= i, -inf above the diagonal (ssd_minimal's stable form)."""
    T = a.size(-1)
    a = a[..., None].expand(*a.shape, T)
    a = a.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool, device=a.device), -1), 0)
    s = torch.cumsum(a, dim=-2)
    return s.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool, device=a.device), 0), -torch.inf)


def ssd_chunked(x, C=CHUNK):
    """ssd_minimal_discrete(X dt, A dt, B, C): intra-chunk (diagonal blocks), chunk states, the inter-chunk recurrence,
    state to output."""
    X, dt, A = x["x"], x["dt"], x["A"]
    Bsz, T, H, P = X.shape
    c = T // C
    Xd = (X * dt[..., None]).reshape(Bsz, c, C, H, P)
    Ad = (dt * A).reshape(Bsz, c, C, H).permute(0, 3, 1, 2)                  # [b, h, c, l]
    Bm = x["B"].expand(Bsz, T, H, -1).reshape(Bsz, c, C, H, -1)
    Cm = x["C"].expand(Bsz, T, H, -1).reshape(Bsz, c, C, H, -1)
    A_cumsum = torch.cumsum(Ad, dim=-1)
    L = torch.exp(segsum(Ad))
    Y_diag = torch.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", Cm, Bm, L, Xd)
    decay_states = torch.exp(A_cumsum[..., -1:] - A_cumsum)
    states = torch.einsum("bclhn,bhcl,bclhp->bchpn", Bm, decay_states, Xd)
    states = torch.cat([torch.zeros_like(states[:, :1]), states], dim=1)
    decay_chunk = torch.exp(segsum(F.pad(A_cumsum[..., -1], (1, 0))))
    states = torch.einsum("bhzc,bchpn->bzhpn", decay_chunk, states)[:, :-1]
    Y_off = torch.einsum("bclhn,bchpn,bhcl->bclhp", Cm, states, torch.exp(A_cumsum))
    return (Y_diag + Y_off).reshape(Bsz, T, H, P)


def power_quadratic(x, p=2):
    """w_ij = (scale q_i.k_j)^p for j <= i;  o_i = sum_j w_ij v_j / sum_j w_ij  (one head at a time: T x T weights)."""
    q, k, v = (x[n].transpose(1, 2) for n in ("q", "k", "v"))
    T, K = q.shape[2], q.shape[3]
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool, device=q.device))
    o = torch.empty_like(v)
    for h in range(q.shape[1]):
        w = ((q[:, h] @ k[:, h].transpose(-1, -2)) * K ** -0.5).pow(p).masked_fill(~mask, 0)
        o[:, h] = (w @ v[:, h]) / w.sum(-1, keepdim=True)
    return o.transpose(1, 2)


def based_parallel(x, window=64):
    """Taylor weights 1 + s + s^2/2 (s = q.k / sqrt(K)) over j <= i, normalised (eps 1e-12), plus exact softmax over the
    last `window` keys (scale K^-1/2), one head at a time."""
    q, k, v = (x[n].transpose(1, 2) for n in ("q", "k", "v"))
    T, K = q.shape[2], q.shape[3]
    i = torch.arange(T, device=q.device)
    causal = i[None, :] <= i[:, None]
    in_window = causal & (i[None, :] > i[:, None] - window)
    o = torch.empty_like(v)
    for h in range(q.shape[1]):
        s = (q[:, h] @ k[:, h].transpose(-1, -2)) * K ** -0.5
        a = (1 + s + s * s / 2).masked_fill(~causal, 0)
        lin = (a @ v[:, h]) / (a.sum(-1, keepdim=True) + 1e-12)
        win = torch.softmax(s.masked_fill(~in_window, -torch.inf), dim=-1) @ v[:, h]
        o[:, h] = lin + win
    return o.transpose(1, 2)


CASES = [  # (form, attnref variant, torch function)
    ("softmax", "tiled", sdpa_math),
    ("linear", "recurrent", gla_recurrent),
    ("linear", "chunked", gla_chunked),
    ("retention", "recurrent", gla_recurrent),
    ("retention", "chunked", gla_chunked),
    ("simple_gla", "recurrent", gla_recurrent),
    ("simple_gla", "chunked", gla_chunked),
    ("gla", "recurrent", gla_recurrent),
    ("gla", "chunked", gla_chunked),
    ("delta_rule", "recurrent", delta_recurrent),
    ("delta_rule", "chunked", delta_chunked),
    ("gated_delta_rule", "recurrent", delta_recurrent),
    ("gated_delta_rule", "chunked", delta_chunked),
    ("kda", "recurrent", delta_recurrent),
    ("mamba", "recurrent", mamba_recurrent),
    ("mamba", "scan", mamba_recurrent),
    ("ssd", "recurrent", ssd_recurrent),
    ("ssd", "chunked", ssd_chunked),
    ("power", "quadratic", power_quadratic),
    ("power", "chunked", power_quadratic),
    ("based", "parallel", based_parallel),
    ("based", "chunked", based_parallel),
    ("based", "recurrent", based_parallel),
]


# ---------------------------------------------------------------- timing

def time_torch(fn, x, device, repeats, max_seconds):
    x = {n: t.to(device) if torch.is_tensor(t) else t for n, t in x.items()}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    out = fn(x)  # warm-up
    sync()
    times = []
    while len(times) < repeats and sum(times) < max_seconds:
        start = time.perf_counter()
        out = fn(x)
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out.cpu()


def time_attnref(attnref, backend, form, variant, path, repeats, max_seconds):
    """Median of attnref's own "computed in X s"; (nan, None) with the reason on stderr when a run fails or outlasts
    max_seconds (e.g. a variant with no kernel on that backend)."""
    out = path.replace(".safetensors", ".out.safetensors")
    times = []
    for _ in range(repeats):
        try:
            line = subprocess.run([attnref, "run", form, "--in", path, "--out", out, "--variant", variant, "--backend", backend],
                                  check=True, capture_output=True, text=True, timeout=max_seconds).stdout
        except subprocess.CalledProcessError as e:
            print(f"{form} {variant}: attnref exit {e.returncode}: {e.stderr.strip()}", file=sys.stderr)
            return float("nan"), None
        except subprocess.TimeoutExpired:
            print(f"{form} {variant}: attnref ran past {max_seconds} s", file=sys.stderr)
            return float("nan"), None
        times.append(float(re.search(r"computed in ([0-9.eE+-]+) s", line).group(1)))
        if sum(times) > max_seconds:
            break
    return statistics.median(times), load_file(out)["o"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="layer", help="tiny, small, layer, gpu or B,T,H,K,V")
    p.add_argument("--attnref", default=os.environ.get("ATTNREF", "attnref"), help="the attnref executable")
    p.add_argument("--backend", default="cpu", help="attnref's backend: cpu or opencl")
    p.add_argument("--ours", action="append", help="a JSON file of AttentionReference.Bench --json (instead of running "
                   "attnref); may be given several times")
    p.add_argument("--ours-time", choices=("wall", "kernel"), default="wall",
                   help="with --ours: the time the ratios use: wall (upload, kernels, download) or kernel (the OpenCL "
                        "kernels alone, as torch's tensors already live on the device); both are printed")
    p.add_argument("--forms", help="comma-separated forms (default: all above)")
    p.add_argument("--devices", default="cuda,cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-seconds", type=float, default=60, help="stop repeating a torch case after this long")
    a = p.parse_args()
    B, T, H, K, V = SIZES.get(a.size) or tuple(int(n) for n in a.size.split(","))
    devices = [d for d in a.devices.split(",") if d != "cuda" or torch.cuda.is_available()]
    ours = {}
    for path in a.ours or []:
        for r in json.load(open(path)):
            ours[(r["form"], r["variant"])] = (r["median_s"], r.get("kernel_s") or float("nan"))
    torch.set_num_threads(os.cpu_count())
    label = "ours wall (bench json)" if a.ours else f"ours (attnref {a.backend})"
    print(f"size B={B} T={T} H={H} K={K} V={V}, f64; torch {torch.__version__} on {', '.join(devices)}; "
          f"{torch.cuda.get_device_name() if 'cuda' in devices else ''}"
          + (f"; torch / ours uses our {a.ours_time} time" if a.ours else ""))
    extra = " ours kernel s |" if a.ours else ""
    print(f"| form | variant | {label} s |{extra} " + " | ".join(f"torch {d} s | torch {d} / ours" for d in devices) + " | max abs Δo |")
    print("|---|---|---:|" + ("---:|" if a.ours else "") + "---:|---:|" * len(devices) + "---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for form, variant, fn in CASES:
            if a.forms and form not in a.forms.split(","):
                continue
            x = make_inputs(form, B, T, H, K, V)
            flags = {"retention": True} if form == "retention" else {}
            o_ours = None
            if a.ours:
                wall, kernel = ours.get((form, variant), (float("nan"), float("nan")))
                t_ours = kernel if a.ours_time == "kernel" else wall
            else:
                path = os.path.join(tmp, f"{form}.safetensors")
                save_file({n: t.contiguous() for n, t in x.items()}, path, metadata={"form": form, "causal": "true"} if form == "softmax" else {"form": form})
                t_ours, o_ours = time_attnref(a.attnref, a.backend, form, variant, path, max(1, a.repeats - 1), a.max_seconds)
            cells, diff = [], (0.0 if o_ours is not None else float("nan"))
            for d in devices:
                try:
                    t, o = time_torch(fn, {**x, **flags}, d, a.repeats, a.max_seconds)
                except (RuntimeError, MemoryError) as e:  # out of memory, mostly
                    print(f"{form} {variant} on {d}: {str(e).splitlines()[0]}", file=sys.stderr)
                    cells += ["—", "—"]
                    continue
                cells += [f"{t:.4g}", f"{t / t_ours:.3g}"]
                if o_ours is not None:
                    diff = max(diff, (o - o_ours).abs().max().item())
                if d == "cuda":
                    torch.cuda.empty_cache()
            first = f"{wall:.4g} | {kernel:.4g}" if a.ours else f"{t_ours:.4g}"
            print(f"| {form} | {variant} | {first} | " + " | ".join(cells) + f" | {diff:.2e} |", flush=True)


if __name__ == "__main__":
    main()
