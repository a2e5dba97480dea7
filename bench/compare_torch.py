#!/usr/bin/env python3
"""Times PyTorch f64 next to attnref on the same inputs, in the same run, and prints the ratios.

For each form below: make f64 inputs (B,T,H,D layout, the bench's value distributions: normals, log-sigmoid gates,
sigmoid betas, L2-normalised delta-rule keys), write them to a safetensors file, time `attnref run` on that file
(its "computed in X s" line; --backend cpu or opencl), then time the PyTorch version of the same equations on
CUDA and on the CPU, and check that torch's o agrees with attnref's.

  softmax           SDPA with the math backend, is_causal=True            vs attnref softmax tiled (causal)
  simple_gla, gla   a loop over t (recurrent) / over chunks (chunked)     vs attnref recurrent / chunked
  delta_rule,       the same; chunked = the WY/UT form with one
  gated_delta_rule  unit-triangular solve per chunk

The loops are written from FORMS.md's equations (o_t = scale * q_t^T S_t, after the update), vectorised over batch
and heads only, as a plain PyTorch user would write them. Needs python3 with torch and safetensors; no network.

  python3 bench/compare_torch.py --attnref /tmp/attnref/attnref/attnref --size gpu --backend opencl
  python3 bench/compare_torch.py --ours results.json     # times from `AttentionReference.Bench --cpu --json results.json`
"""
import argparse
import json
import os
import re
import statistics
import subprocess
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
    x = {"q": n(B, T, H, K), "k": n(B, T, H, K), "v": n(B, T, H, V)}
    if form == "simple_gla":
        x["g"] = F.logsigmoid(n(B, T, H))
    if form == "gla":
        x["gk"] = F.logsigmoid(n(B, T, H, K))
    if form in ("delta_rule", "gated_delta_rule"):
        x["k"] = F.normalize(x["k"], dim=-1)
        x["beta"] = torch.sigmoid(n(B, T, H))
    if form == "gated_delta_rule":
        x["g"] = F.logsigmoid(n(B, T, H))
    return x


# ---------------------------------------------------------------- PyTorch versions of the equations

def sdpa_math(x):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    q, k, v = (x[n].transpose(1, 2) for n in ("q", "k", "v"))  # [B,H,T,D]
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)


def gla_recurrent(x):
    """S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T;  o_t = scale * S_t^T q_t  (g per key, or per head broadcast)."""
    q, k, v = x["q"], x["k"], x["v"]
    B, T, H, K = q.shape
    gate = x["gk"] if "gk" in x else x["g"][..., None]
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
    gate = (x["gk"] if "gk" in x else x["g"][..., None]).transpose(1, 2)
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


CASES = [  # (form, attnref variant, torch function)
    ("softmax", "tiled", sdpa_math),
    ("simple_gla", "recurrent", gla_recurrent),
    ("simple_gla", "chunked", gla_chunked),
    ("gla", "recurrent", gla_recurrent),
    ("gla", "chunked", gla_chunked),
    ("delta_rule", "recurrent", delta_recurrent),
    ("delta_rule", "chunked", delta_chunked),
    ("gated_delta_rule", "recurrent", delta_recurrent),
    ("gated_delta_rule", "chunked", delta_chunked),
]


# ---------------------------------------------------------------- timing

def time_torch(fn, x, device, repeats, max_seconds):
    x = {n: t.to(device) for n, t in x.items()}
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


def time_attnref(attnref, backend, form, variant, path, repeats):
    out = path.replace(".safetensors", ".out.safetensors")
    times = []
    for _ in range(repeats):
        line = subprocess.run([attnref, "run", form, "--in", path, "--out", out, "--variant", variant, "--backend", backend],
                              check=True, capture_output=True, text=True).stdout
        times.append(float(re.search(r"computed in ([0-9.eE+-]+) s", line).group(1)))
    return statistics.median(times), load_file(out)["o"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="layer", help="tiny, small, layer, gpu or B,T,H,K,V")
    p.add_argument("--attnref", default=os.environ.get("ATTNREF", "attnref"), help="the attnref executable")
    p.add_argument("--backend", default="cpu", help="attnref's backend: cpu or opencl")
    p.add_argument("--ours", help="a JSON file of AttentionReference.Bench --json (instead of running attnref)")
    p.add_argument("--forms", help="comma-separated forms (default: all above)")
    p.add_argument("--devices", default="cuda,cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-seconds", type=float, default=60, help="stop repeating a torch case after this long")
    a = p.parse_args()
    B, T, H, K, V = SIZES.get(a.size) or tuple(int(n) for n in a.size.split(","))
    devices = [d for d in a.devices.split(",") if d != "cuda" or torch.cuda.is_available()]
    ours = {}
    if a.ours:
        ours = {(r["form"], r["variant"]): r["median_s"] for r in json.load(open(a.ours))}
    torch.set_num_threads(os.cpu_count())
    label = f"ours ({'bench json' if a.ours else 'attnref ' + a.backend})"
    print(f"size B={B} T={T} H={H} K={K} V={V}, f64; torch {torch.__version__} on {', '.join(devices)}; "
          f"{torch.cuda.get_device_name() if 'cuda' in devices else ''}")
    print(f"| form | variant | {label} s | " + " | ".join(f"torch {d} s | torch {d} / ours" for d in devices) + " | max abs Δo |")
    print("|---|---|---:|" + "---:|---:|" * len(devices) + "---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for form, variant, fn in CASES:
            if a.forms and form not in a.forms.split(","):
                continue
            x = make_inputs(form, B, T, H, K, V)
            o_ours = None
            if a.ours:
                t_ours = ours.get((form, variant), float("nan"))
            else:
                path = os.path.join(tmp, f"{form}.safetensors")
                save_file({n: t.contiguous() for n, t in x.items()}, path, metadata={"form": form, "causal": "true"} if form == "softmax" else {"form": form})
                t_ours, o_ours = time_attnref(a.attnref, a.backend, form, variant, path, max(1, a.repeats - 1))
            cells, diff = [], (0.0 if o_ours is not None else float("nan"))
            for d in devices:
                t, o = time_torch(fn, x, d, a.repeats, a.max_seconds)
                cells += [f"{t:.4g}", f"{t / t_ours:.3g}"]
                if o_ours is not None:
                    diff = max(diff, (o - o_ours).abs().max().item())
            print(f"| {form} | {variant} | {t_ours:.4g} | " + " | ".join(cells) + f" | {diff:.2e} |", flush=True)


if __name__ == "__main__":
    main()
