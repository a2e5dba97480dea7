#!/usr/bin/env bash
# On an NVIDIA GPU machine with no .NET and no network (run from the repository root, with .device/ carried):
# unpack the self-contained attnref, register the NVIDIA OpenCL ICD if the loader does not list it, then
#   tests   the whole test suite through attnref-tests, OpenCL on the GPU: the CPU = OpenCL properties on NVIDIA,
#           and every CPU property on this machine's AVX-512 (the Vector512 path),
#   golden  verify every golden on the CPU and on OpenCL, and check the shipped example with the OpenCL backend,
#   bench   time each OpenCL form at B=1, T=8192, H=32, K=V=128 in f64 with the bench's runner, and the CPU's peak,
#   torch-gpu  bench/compare_torch.py: PyTorch f64 on CUDA (SDPA math, plain loops) against the bench's OpenCL times,
#   torch-cpu  the same on this CPU against attnref's CPU reference at the layer size,
#   cpu     the CPU reference on this host at the layer size: every recurrent variant against its measured state-sweep
#           floor, and softmax tiled on the Vector512 path and on the Vector256 path (DOTNET_EnableAVX512=0),
#   cpu-fast  the chunked, tiled, scan and split variants at the layer size (with BASE=DIR: on an earlier build too),
#   gpu-tests, gpu-golden, gpu-bench  the ILGPU version on CUDA: its laws, the goldens and the example, the timings,
# (all but cpu when no step is named: opencl-nvidia.sh [tests] [golden] [bench] [torch-gpu] [torch-cpu] [cpu]) and
# print a short table last.
# Results go to /tmp/attnref-out, and as one results.tar.gz to $OUT when set (the device tool brings back few files).
set -uo pipefail
steps=${*:-tests golden bench torch-gpu torch-cpu}
has() { [[ " $steps " == *" $1 "* ]]; }
out=/tmp/attnref-out; mkdir -p "$out"     # kept across calls on a warm machine: torch-gpu reads earlier bench JSON
# Unpacked inside the repository: the tests find goldens and examples by walking up to Reference.sln.
work=$PWD/.device/run && rm -rf "$work" && mkdir -p "$work"
tar -C "$work" -xJf .device/attnref.tar.xz
# OVERLAY=DIR: files copied over the unpacked programs, e.g. an AttentionReference.OpenCL.dll built from a branch
# whose kernel is on trial (the same assembly version, so the published .deps.json still holds).
[ -n "${OVERLAY:-}" ] && cp -v "$OVERLAY"/* "$work/attnref/"
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
if has tests; then
  # TEST_FILTER="PREFIX ...": only the tests whose full names start with one of them (e.g. AttentionReference.Tests.OpenCL).
  filters=(); for f in ${TEST_FILTER:-}; do filters+=(--filter "$f"); done
  "$work/attnref/attnref-tests" "${filters[@]}" > "$out/tests.txt" 2>&1; rows+=("attnref-tests ${TEST_FILTER:-all} (opencl = $REF_OPENCL_DEVICE)|exit $?|$(tail -1 "$out/tests.txt")")
  grep -A40 '^Failed:' "$out/tests.txt"
fi
if has golden; then
  "$attnref" golden verify --dir golden > "$out/golden-cpu.txt" 2>&1; rows+=("golden verify cpu (AVX-512)|exit $?|$(tail -1 "$out/golden-cpu.txt")")
  "$attnref" golden verify --dir golden --backend opencl > "$out/golden-opencl.txt" 2>&1; rows+=("golden verify opencl f64|exit $?|$(tail -1 "$out/golden-opencl.txt")")
  "$attnref" check softmax --backend opencl --in examples/softmax/input.safetensors \
    --candidate examples/softmax/candidate_good.safetensors > "$out/example-opencl.txt" 2>&1
  rows+=("check example (opencl)|exit $?|$(tail -1 "$out/example-opencl.txt")")
fi

# Every form with an OpenCL kernel at the issue's size, f64, timed by the bench's plain runner (upload, kernels and
# download, median of repeats), with the device's measured FMA rate; then the CPU's peak (AVX-512, 16 cores).
bench="$work/attnref/AttentionReference.Bench"
if has bench; then
  [ -s "$out/peak-cpu.md" ] || { "$bench" --peak --out "$out/peak-cpu.md" > "$out/peak-cpu.log" 2>&1; rows+=("bench --peak (cpu)|exit $?|$out/peak-cpu.md"); }
  # One family per process, each under a time limit, so that one slow case cannot take the rest down with it.
  # BENCH_ARGS: more bench options (e.g. --variant tiled); BENCH_TAG names the files (e.g. a kernel on trial).
  for family in ${BENCH_FAMILIES:-softmax linear gated_linear delta_rule state_space hybrid}; do
    name=opencl-gpu-$family; [ -n "${BENCH_TAG:-}" ] && name=trial-$BENCH_TAG-$family   # torch-gpu reads opencl-gpu-*
    timeout 300 "$bench" --opencl --size gpu --precision f64 --family "$family" --repeats 2 --sets 1 --max-seconds 10 \
      ${BENCH_ARGS:-} --out "$out/$name.md" --json "$out/$name.json" > "$out/$name.log" 2>&1
    rows+=("bench --opencl --size gpu f64 $family${BENCH_TAG:+ ($BENCH_TAG)}|exit $?|$out/$name.md")
    cat "$out/$name.md" 2>/dev/null
  done
fi

# PyTorch side by side, in the same run. torch-gpu: torch on CUDA against the bench's OpenCL times just measured
# (ratios of kernel time: torch's tensors live on the device); torch-cpu: attnref's CPU against torch on this CPU.
if has torch-gpu; then
  ours=(); for f in "$out"/opencl-gpu-*.json; do [ -s "$f" ] && ours+=(--ours "$f"); done
  python3 bench/compare_torch.py "${ours[@]}" --ours-time kernel --size gpu --devices cuda --repeats 3 --max-seconds 30 \
    > "$out/torch-gpu.md" 2> "$out/torch-gpu.log"; rows+=("compare_torch cuda vs opencl (gpu size)|exit $?|$out/torch-gpu.md")
  cat "$out/torch-gpu.md"; tail -5 "$out/torch-gpu.log"
fi
# BASE=DIR: an AttentionReference.dll (and bench) of an earlier commit; each CPU case then runs on it and on this build,
# in turns, so that the ratio comes from one run on one machine.
builds=(new); if [ -n "${BASE:-}" ]; then rm -rf "$work/base"; cp -r "$work/attnref" "$work/base"; cp "$BASE"/* "$work/base/"; builds=(base new); fi
cpubench() { # NAME ARGS...: the bench on each build, tables to $out/cpu-NAME-BUILD.md
  local name=$1; shift
  for build in "${builds[@]}"; do
    local dir=$work/attnref; [ "$build" = base ] && dir=$work/base
    timeout "${CPU_BENCH_SECONDS:-300}" "$dir/AttentionReference.Bench" --cpu --size layer --repeats 3 --sets 2 --max-seconds 20 "$@" --out "$out/cpu-$name-$build.md" \
      > "$out/cpu-$name-$build.log" 2>&1
    rows+=("bench --cpu layer $name ($build)|exit $?|$out/cpu-$name-$build.md"); echo "## $name ($build)"; cat "$out/cpu-$name-$build.md"
  done
}
if has cpu; then
  cpubench recurrent --variant recurrent --family linear,gated_linear,delta_rule,state_space
  cpubench power-small --form power --size small
  cpubench softmax-v512 --form softmax --variant tiled
  DOTNET_EnableAVX512=0 cpubench softmax-v256 --form softmax --variant tiled
fi
# cpu-fast: the variants whose speed the reference promises to keep (chunked, tiled, scan, split), on both builds.
if has cpu-fast; then
  cpubench fast --variant chunked,tiled,scan,split
fi

# The GPU version in ILGPU, on CUDA: its laws (CUDA and CPU-accelerator classes), the goldens, the example in f32,
# and every form with kernels at the issue's size in f64 with the kernels' own time.
if has gpu-tests; then
  timeout "${GPU_TESTS_SECONDS:-240}" "$work/attnref/attnref-tests" --filter AttentionReference.Tests.Gpu > "$out/gpu-tests.txt" 2>&1
  rows+=("attnref-tests Gpu (ILGPU: CUDA and CPU accelerator)|exit $?|$(tail -1 "$out/gpu-tests.txt")")
  grep -B2 -A3 '^FAIL' "$out/gpu-tests.txt" | head -80
fi
if has gpu-golden; then
  "$attnref" golden verify --dir golden --backend gpu --device cuda > "$out/golden-gpu.txt" 2>&1; rows+=("golden verify gpu (cuda) f64|exit $?|$(tail -1 "$out/golden-gpu.txt")")
  grep -E 'FAIL|failed' "$out/golden-gpu.txt" | head -20
  "$attnref" check softmax --backend gpu --device cuda --precision f32 --in examples/softmax/input.safetensors \
    --candidate examples/softmax/candidate_good.safetensors > "$out/example-gpu.txt" 2>&1
  rows+=("check example (gpu f32)|exit $?|$(tail -1 "$out/example-gpu.txt")")
fi
if has gpu-bench; then
  for family in ${BENCH_FAMILIES:-softmax linear gated_linear delta_rule state_space hybrid}; do
    name=gpu-gpu-$family
    timeout "${GPU_BENCH_SECONDS:-300}" "$bench" --gpu --device cuda --size gpu --precision f64 --family "$family" --repeats 2 --sets 1 --max-seconds 10 \
      ${BENCH_ARGS:-} --out "$out/$name.md" --json "$out/$name.json" > "$out/$name.log" 2>&1
    rows+=("bench --gpu --size gpu f64 $family|exit $?|$out/$name.md")
    cat "$out/$name.md" 2>/dev/null; tail -3 "$out/$name.log"
  done
fi
if has torch-cpu; then
  python3 bench/compare_torch.py --attnref "$attnref" --backend cpu --size layer --devices cpu --repeats 2 --max-seconds 30 \
    > "$out/torch-cpu.md" 2> "$out/torch-cpu.log"; rows+=("compare_torch cpu (layer size)|exit $?|$out/torch-cpu.md")
  cat "$out/torch-cpu.md"; tail -5 "$out/torch-cpu.log"
fi

echo
printf '%s\n' "${rows[@]}" | awk -F'|' '{ printf "%-40s %-12s %s\n", $1, $2, $3 }' | tee "$out/table.txt"
[ -n "${OUT:-}" ] && tar -C "$out" -czf "$OUT/results.tar.gz" .
