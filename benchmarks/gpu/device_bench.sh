#!/usr/bin/env bash
# The GPU half of the benchmarks, for a lent GPU machine with a CUDA toolkit and no network.
#
#   python benchmarks/gpu/pack.py                 # here: .device/ = trimmed llama.cpp tree + two wheels
#   bash benchmarks/gpu/device_bench.sh           # there, from the repository root, .device/ carried along
#
#   python benchmarks/gpu/pack.py --wheel cc75-cu13   # here: the same, and the built wheel itself (and llcuda's)
#   TARGET=cc75-cu13 WHEEL=1 bash benchmarks/gpu/device_bench.sh   # there: runs the carried wheel, not a build
#
# WHEEL=1 runs the wheel we ship, as pip would install it next to the GPU machine's own NVIDIA wheels (their
# folder is linked beside the wheel's package, as in one site-packages): `llcuda selftest` on the GPU, the seed's
# quick test with every layer offloaded, pp512/tg128 and the first run's PTX JIT cost against a native build for
# that GPU (the same configuration for its own arch, built there from the tree). Rehearse it on a machine without
# a GPU with TARGET=cpu WHEEL=1: every step but the GPU ones.
#
# It builds the llcuda cc75 configuration (the top-level CMakeLists.txt, LLCUDA_TARGET=cc75: sm_75 SASS +
# compute_75 PTX, FORCE_CUBLAS, FA off, shared libs, run-time backends) with that machine's toolkit, and the same
# configuration for the GPU's own architecture (LLCUDA_CUDA_ARCHITECTURES_OVERRIDE), whose libggml-cuda.so then
# replaces the cc75 one in a copy of the payload. On a GPU newer than Turing the cc75 build runs through the
# driver's PTX JIT, which is what a T4 wheel does on any newer card. Then, on a random-weight gemma-3-1b-shaped
# model quantized to Q4_K_M by the payload's own llama-quantize:
#   - llama-bench pp512/tg128 for both builds, and the first run's JIT cost with an empty JIT cache;
#   - device-to-device copy bandwidth (PyTorch), for the memory-bandwidth roofline of generation;
#   - the llcuda runtime itself: discovery of the payload as an installed backend, check_gpu_compatibility(),
#     load_model() with gpu_layers=None (llama-server fits the offload) and infer().
# Results: $OUT/results.json (summarized by benchmarks/gpu/summarize.py), $OUT/log.txt, $OUT/details.tgz.
set -uo pipefail
ROOT=$(pwd)
OUT=${OUT:-$ROOT/gpu-out}
W=${WORK:-/tmp/llcuda-gpu}
JOBS=${JOBS:-$(nproc)}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-360}
TARGET=${TARGET:-cc75}  # TARGET=cpu rehearses every step but the GPU ones on a machine without a GPU
PREBUILT=${PREBUILT:-}  # a site-packages holding llcuda_$TARGET/: skip configure, build and install (rehearsal)
WHEEL=${WHEEL:-}  # 1: the carried wheel of $TARGET (.device/whl/, benchmarks/gpu/pack.py --wheel), not a build
PKG=llcuda_${TARGET//-/_}
LABEL=$([ -n "$WHEEL" ] && echo wheel || echo cc75)  # how the runs of the shipped configuration are named
mkdir -p "$OUT" "$W/logs"
exec > >(tee -a "$OUT/log.txt") 2>&1
t0=$(date +%s)
stamp() { printf '[gpu %4ds] %s\n' "$(($(date +%s) - t0))" "$*"; }
save() {  # after every step, so that a run cut short still returns what it measured
    python3 "$ROOT/benchmarks/gpu/summarize.py" "$W" "$OUT/results.json" >/dev/null 2>&1 || true
    tar -czf "$OUT/details.tgz" -C "$W" logs 2>/dev/null || true
}
trap 'save; python3 -m json.tool "$OUT/results.json"; stamp finished' EXIT

stamp "machine"
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.max.memory --format=csv | tee "$W/logs/gpu.csv"
nvcc --version | tail -n 2
echo "cores: $(nproc)  g++: $(g++ -dumpfullversion)  cmake: $(cmake --version | head -n 1)  python: $(python3 -V)"

stamp "unpack the llama.cpp tree and the wheels"
sha256sum -c <(sed 's/  #.*//' .device/llama.cpp.tar.xz.sha256 | sed "s|  |  .device/|") || exit 1
tar -xJf .device/llama.cpp.tar.xz -C "$W"
python3 -m pip install -q --no-index --no-deps --no-compile --target "$W/site" .device/whl/*.whl || exit 1
export PYTHONPATH="$W/site:$ROOT/python:$ROOT/factory:$ROOT/testkit:$ROOT/tests:$ROOT/benchmarks"
export LLCUDA_LLAMA_CPP_SOURCE="$W/llama.cpp"
if [ -n "$WHEEL" ]; then
    [ -d "$W/site/$PKG/bin" ] || { echo "no $PKG in .device/whl/: python benchmarks/gpu/pack.py --wheel $TARGET"; exit 1; }
    # The machine's own NVIDIA wheels, linked where the wheel's RUNPATH looks ($ORIGIN/../../nvidia/...): one
    # site-packages, as `pip install "llcuda[$TARGET]"` beside them gives.
    nvidia=$(python3 -c 'import importlib.util as u; s = u.find_spec("nvidia"); print(s.submodule_search_locations[0] if s else "")')
    if [ -n "$nvidia" ]; then
        ln -sfn "$nvidia" "$W/site/nvidia"
        echo "NVIDIA wheels: $nvidia ($(find "$nvidia" -mindepth 1 -maxdepth 1 -printf '%f '))"
    else
        echo "no NVIDIA wheels on this Python: $TARGET's CUDA libraries will not load (it serves on the CPU)"
    fi
    ldd "$W/site/$PKG/bin/libggml-cuda.so" 2>/dev/null | grep -E "cublas|cudart|libcuda|not found" | tee "$W/logs/wheel-ldd.txt"
fi

# The GPU's own architecture, e.g. 90 for an H100/H200.
NATIVE=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d '. ')
echo "$NATIVE" >"$W/logs/native_arch"

stamp "write the synthetic gemma-3-1b (background)"
(time python3 benchmarks/synthetic_gemma.py "$W/gemma-f16.gguf") >"$W/logs/model.log" 2>&1 &
model_pid=$!

if [ -n "$WHEEL" ]; then
    stamp "the carried wheel of $TARGET; configure $TARGET for sm_$NATIVE only"
    CUDA_HERE=$(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')
    if [ "$TARGET" != cpu ]; then
        cmake -S . -B "$W/bnative" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLCUDA_TARGET="$TARGET" \
            -DLLCUDA_CUDA_VERSION_OVERRIDE="$CUDA_HERE" -DLLCUDA_CUDA_ARCHITECTURES_OVERRIDE="$NATIVE" \
            >"$W/logs/configure-bnative.log" 2>&1 || { tail -n 30 "$W/logs/configure-bnative.log"; exit 1; }
        s=$(date +%s%N)
        timeout "$BUILD_TIMEOUT" cmake --build "$W/bnative" -j "$JOBS" --target ggml-cuda >"$W/logs/build-bnative.log" 2>&1
        echo "$? $(( ($(date +%s%N) - s) / 1000000 ))" >"$W/logs/build-bnative.time"
        stamp "native build (exit code, ms): $(cat "$W/logs/build-bnative.time")"
    fi
    mkdir -p "$W/stage75" && cp -a "$W/site/$PKG" "$W/site/$PKG.libs" "$W/stage75/"  # .libs: what the repair grafted
    [ -e "$W/site/nvidia" ] && ln -sfn "$(readlink -f "$W/site/nvidia")" "$W/stage75/nvidia"
elif [ -z "$PREBUILT" ]; then
    stamp "configure cc75 and cc75-for-sm_$NATIVE"
    # The GPU machine has its own toolkit, not the row's: build the configuration with it (benchmark builds only).
    CUDA_HERE=$(nvcc --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')
    cfg() { cmake -S . -B "$W/$1" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLCUDA_TARGET="$TARGET" -DLLCUDA_CUDA_VERSION_OVERRIDE="$CUDA_HERE" "${@:2}" >"$W/logs/configure-$1.log" 2>&1; }
    cfg b75 || { tail -n 30 "$W/logs/configure-b75.log"; exit 1; }
    if [ "$TARGET" != cpu ]; then
        cfg bnative -DLLCUDA_CUDA_ARCHITECTURES_OVERRIDE="$NATIVE" || { tail -n 30 "$W/logs/configure-bnative.log"; exit 1; }
    fi
    grep -h "llcuda:" "$W/logs/configure-b75.log" "$W/logs/configure-bnative.log"

    stamp "build both with $JOBS jobs each (the whole payload for cc75, libggml-cuda.so for sm_$NATIVE)"
    build() {  # NICE=0 for the cc75 payload, 10 for the native library: cc75 gets the cores first
        local s
        s=$(date +%s%N)
        timeout "$BUILD_TIMEOUT" nice -n "$NICE" cmake --build "$W/$1" -j "$JOBS" "${@:2}" >"$W/logs/build-$1.log" 2>&1
        echo "$? $(( ($(date +%s%N) - s) / 1000000 ))" >"$W/logs/build-$1.time"
    }
    NICE=0 build b75 &
    b1=$!
    b2=""
    if [ "$TARGET" != cpu ]; then
        NICE=10 build bnative --target ggml-cuda &
        b2=$!
    fi
    wait $b1 $b2
    stamp "builds (exit code, ms): cc75 $(cat "$W/logs/build-b75.time"), sm_$NATIVE $(cat "$W/logs/build-bnative.time" 2>/dev/null)"
    save
    [ "$(cut -d' ' -f1 "$W/logs/build-b75.time")" = 0 ] || { tail -n 40 "$W/logs/build-b75.log"; exit 1; }

    stamp "install the cc75 payload, and a copy with the sm_$NATIVE libggml-cuda.so"
    cmake --install "$W/b75" --component llcuda --prefix "$W/stage75" >/dev/null
else
    mkdir -p "$W/stage75" && cp -a "$PREBUILT/$PKG" "$W/stage75/"
fi
BIN75="$W/stage75/$PKG/bin"
mkdir -p "$W/stagenative"
cp -a "$W/stage75/$PKG" "$W/stagenative/"
[ -d "$W/stage75/$PKG.libs" ] && cp -a "$W/stage75/$PKG.libs" "$W/stagenative/"
[ -e "$W/stage75/nvidia" ] && ln -sfn "$(readlink -f "$W/stage75/nvidia")" "$W/stagenative/nvidia"
BINN="$W/stagenative/$PKG/bin"
if [ -f "$W/bnative/bin/libggml-cuda.so" ]; then
    cp "$W/bnative/bin/libggml-cuda.so" "$BINN/libggml-cuda.so"
else
    BINN=""
fi
for b in "$BIN75" ${BINN:+"$BINN"}; do
    [ -f "$b/libggml-cuda.so" ] || continue
    echo "== $b/libggml-cuda.so: $(stat -c %s "$b/libggml-cuda.so") bytes"
    cuobjdump --list-elf "$b/libggml-cuda.so" | sed -E 's/.*\.(sm_[0-9a-z]+)\..*/\1/' | sort | uniq -c
    cuobjdump --list-ptx "$b/libggml-cuda.so" | sed -E 's/.*\.(sm_[0-9a-z]+)\..*/ptx \1/' | sort | uniq -c
    ldd "$b/libggml-cuda.so" | grep -E "cublas|cudart|libcuda|not found"
    timeout 60 "$b/llama-server" --list-devices 2>&1 | grep -vE "^load_backend|^$" | tail -n 3
done | tee "$W/logs/cuobjdump.txt"

stamp "quantize to Q4_K_M with the payload's llama-quantize"
wait $model_pid
cat "$W/logs/model.log"
(time "$BIN75/llama-quantize" "$W/gemma-f16.gguf" "$W/gemma-q4km.gguf" Q4_K_M "$JOBS") >"$W/logs/quantize.log" 2>&1 \
    || { tail -n 20 "$W/logs/quantize.log"; exit 1; }
tail -n 4 "$W/logs/quantize.log"
python3 -c "from synthetic_gemma import weight_bytes; import json,sys; print(json.dumps(weight_bytes(sys.argv[1])))" \
    "$W/gemma-q4km.gguf" | tee "$W/logs/weights.json"

bench() { # name bin: first run with an empty JIT cache, again warm, then pp512/tg128
    local name=$1 bin=$2
    export CUDA_CACHE_PATH="$W/jit-$name" CUDA_CACHE_MAXSIZE=4294967296
    rm -rf "$CUDA_CACHE_PATH"
    for run in cold warm; do
        local s
        s=$(date +%s%N)
        timeout 180 "$bin/llama-bench" -m "$W/gemma-q4km.gguf" -ngl 99 -p 0 -n 16 -r 1 >"$W/logs/first-$name-$run.log" 2>&1
        echo "$? $(( ($(date +%s%N) - s) / 1000000 ))" >"$W/logs/first-$name-$run.time"
    done
    du -sb "$CUDA_CACHE_PATH" 2>/dev/null | cut -f1 >"$W/logs/jit-cache-$name.bytes"
    timeout 120 "$bin/llama-bench" -m "$W/gemma-q4km.gguf" -ngl 99 -p 512 -n 128 -r 5 -o json \
        >"$W/logs/bench-$name.json" 2>"$W/logs/bench-$name.err"
    stamp "$name: first run cold $(cat "$W/logs/first-$name-cold.time"), warm $(cat "$W/logs/first-$name-warm.time"), JIT cache $(cat "$W/logs/jit-cache-$name.bytes") B"
    python3 -c "import json,sys; [print(f\"  {r['n_prompt']=} {r['n_gen']=} {r['avg_ts']:.1f} t/s\") for r in json.load(open(sys.argv[1]))]" \
        "$W/logs/bench-$name.json" || tail -n 5 "$W/logs/bench-$name.err"
    save
}
stamp "llama-bench: $LABEL, $TARGET (PTX JIT on sm_$NATIVE)"
bench "$LABEL" "$BIN75"
if [ -n "$BINN" ]; then
    stamp "llama-bench: native sm_$NATIVE"
    bench native "$BINN"
fi

stamp "memory bandwidth (device-to-device copy, PyTorch)"
python3 - <<'PY' | tee "$W/logs/bandwidth.json"
import json, torch
n = 4 << 30
a = torch.empty(n, dtype=torch.uint8, device="cuda"); b = torch.empty_like(a)
for _ in range(3): b.copy_(a)
torch.cuda.synchronize()
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
reps = 20
start.record()
for _ in range(reps): b.copy_(a)
end.record(); torch.cuda.synchronize()
s = start.elapsed_time(end) / 1000
print(json.dumps({"bytes_moved": 2 * n * reps, "seconds": s, "gb_per_s": 2 * n * reps / s / 1e9}))
PY
save

stamp "llcuda runtime on the GPU: the $LABEL payload as an installed backend"
python3 - "$W" "$TARGET" "$WHEEL" <<'PY' 2>&1 | tee "$W/logs/runtime.txt"
import json, re, sys, time
from pathlib import Path
w, target, wheel = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
package = "llcuda_" + target.replace("-", "_")
site = w / ("site" if wheel else "stage75")  # the wheel: pip's own install, its dist-info and entry point
if not wheel:
    dist = site / f"{package}-0.0.0.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: llcuda-{target}\nVersion: 0.0.0\n")
    (dist / "entry_points.txt").write_text(f"[llcuda.backends]\n{target} = {package}\n")
sys.path.insert(0, str(site))
import os
os.environ["CUDA_CACHE_PATH"] = str(w / f"jit-{target}")
import llcuda
compat = llcuda.check_gpu_compatibility()
server = llcuda.find_llama_server()
eng = llcuda.InferenceEngine()
start = time.perf_counter()
eng.load_model(w / "gemma-q4km.gguf", ctx_size=4096, silent=True)
load_s = time.perf_counter() - start
res = eng.infer("The quick brown fox", max_tokens=128, temperature=0, seed=1)
log = eng.server.log_path.read_text(errors="replace")
eng.unload_model()
offload = re.findall(r"offloaded (\d+)/(\d+) layers to GPU", log)
out = {
    "check_gpu_compatibility": {k: compat[k] for k in ("gpu_name", "compute_capability", "compatible", "backends",
                                                       "recommended_target", "reason")},
    "llama_server": str(server), "load_model_s": round(load_s, 2), "tokens": res.tokens_generated,
    "tokens_per_s": round(res.tokens_per_sec, 1), "offloaded": offload[-1] if offload else None,
    "cuda_buffers": re.findall(r"CUDA0 \w+ buffer size = +[\d.]+ MiB", log)[:4],
    "fit": [l.strip() for l in log.splitlines() if "fit" in l.lower()][:6],
}
print(json.dumps(out, indent=1))
(w / "logs" / "runtime.json").write_text(json.dumps(out))
(w / "logs" / "server-runtime.log").write_text(log[-20000:])
PY
save

stamp "llcuda selftest on the GPU: llama.cpp's test-backend-ops, the GPU against the CPU ($TARGET)"
s=$(date +%s%N)
timeout 420 python3 -m llcuda selftest --backend "$TARGET" --json >"$W/logs/selftest.json" 2>"$W/logs/selftest.err"
echo "$? $(( ($(date +%s%N) - s) / 1000000 ))" >"$W/logs/selftest.time"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print({k: d.get(k) for k in ('verdict', 'devices', 'tests_passed', 'tests_total')})" \
    "$W/logs/selftest.json" 2>/dev/null || tail -n 5 "$W/logs/selftest.err"
save

stamp "the seed's quick test with every layer offloaded ($TARGET, the gemma-shaped Q4_K_M)"
python3 - "$W" <<'PY' 2>&1 | tee "$W/logs/quick.txt"
import json, re, sys, time
from pathlib import Path
w = Path(sys.argv[1])
import llcuda
engine = llcuda.InferenceEngine()
start = time.perf_counter()
engine.load_model(str(w / "gemma-q4km.gguf"), gpu_layers=99, ctx_size=1024, silent=False)
load_s = time.perf_counter() - start
result = engine.infer("What is 2+2?", max_tokens=50)
log = engine.server.log_path.read_text(errors="replace")
engine.unload_model()
offload = re.findall(r"offloaded (\d+)/(\d+) layers to GPU", log)
out = {"server": str(engine.server.find_llama_server()), "load_s": round(load_s, 2), "success": result.success,
       "tokens": result.tokens_generated, "tokens_per_s": round(result.tokens_per_sec, 1),
       "offloaded": offload[-1] if offload else None}
print(json.dumps(out, indent=1))
(w / "logs" / "quick.json").write_text(json.dumps(out))
PY
