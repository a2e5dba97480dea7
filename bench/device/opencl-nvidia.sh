#!/usr/bin/env bash
# On an NVIDIA GPU machine with no .NET and no network (run from the repository root, with .device/ carried):
# unpack the self-contained attnref, register the NVIDIA OpenCL ICD if the loader does not list it, then
#   1. verify every golden on the CPU (this machine's CPU has AVX-512: the Vector512 path) and on OpenCL,
#   2. check the shipped example with the OpenCL backend,
#   3. time each OpenCL form at B=1, T=8192, H=32, K=V=128 in f64 with the bench's runner, and the CPU's peak,
# and print a short table last. Results also go to $OUT when set.
set -uo pipefail
out=${OUT:-/tmp/attnref-out}; mkdir -p "$out"
work=/tmp/attnref && rm -rf "$work" && mkdir -p "$work"
tar -C "$work" -xJf .device/attnref.tar.xz
attnref="$work/attnref/attnref"

# The ICD loader reads /etc/OpenCL/vendors/*.icd; NVIDIA's driver library may be present but unregistered.
if ! grep -qs libnvidia-opencl /etc/OpenCL/vendors/*.icd; then
  mkdir -p /etc/OpenCL/vendors && echo libnvidia-opencl.so.1 > /etc/OpenCL/vendors/nvidia.icd
fi
# The loader itself: the system's, else the one CUDA ships.
if ! ldconfig -p | grep -q 'libOpenCL.so.1 '; then
  loader=$(find / -name 'libOpenCL.so.1' -not -path '*/proc/*' 2>/dev/null | head -1)
  [ -n "$loader" ] && export LD_LIBRARY_PATH="$(dirname "$loader"):${LD_LIBRARY_PATH:-}"
fi
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/gpu.txt"
lscpu | grep -o 'avx512[a-z_]*' | sort -u | tr '\n' ' ' | tee "$out/cpu-avx512.txt"; echo

# Prefer the GPU (attnref does by default; this names it for the bench and older builds too).
export REF_OPENCL_DEVICE=${REF_OPENCL_DEVICE:-NVIDIA}
rows=()
"$attnref" golden verify --dir golden > "$out/golden-cpu.txt" 2>&1; rows+=("golden verify cpu (AVX-512)|exit $?|$(tail -1 "$out/golden-cpu.txt")")
"$attnref" golden verify --dir golden --backend opencl > "$out/golden-opencl.txt" 2>&1; rows+=("golden verify opencl f64|exit $?|$(tail -1 "$out/golden-opencl.txt")")
"$attnref" check softmax --backend opencl --in examples/softmax/input.safetensors \
  --candidate examples/softmax/candidate_good.safetensors > "$out/example-opencl.txt" 2>&1
rows+=("check example (opencl)|exit $?|$(tail -1 "$out/example-opencl.txt")")

# Every form with an OpenCL kernel at the issue's size, f64, timed by the bench's plain runner (upload, kernels and
# download, median of repeats), with the device's measured FMA rate; then the CPU's peak (AVX-512, 16 cores).
bench="$work/attnref/AttentionReference.Bench"
"$bench" --peak --out "$out/peak-cpu.md" > "$out/peak-cpu.log" 2>&1; rows+=("bench --peak (cpu)|exit $?|$out/peak-cpu.md")
"$bench" --opencl --size gpu --precision f64 --repeats 3 --sets 2 --max-seconds 40 \
  --out "$out/opencl-gpu.md" --json "$out/opencl-gpu.json" > "$out/opencl-gpu.log" 2>&1
rows+=("bench --opencl --size gpu (f64)|exit $?|$out/opencl-gpu.md")
cat "$out/opencl-gpu.md" 2>/dev/null

echo
printf '%s\n' "${rows[@]}" | awk -F'|' '{ printf "%-40s %-12s %s\n", $1, $2, $3 }' | tee "$out/table.txt"
