"""The ``llcuda`` command: ``doctor``, ``backends``, ``selftest``, ``serve MODEL``, ``run MODEL PROMPT``,
``rpc-server``.

A user error exits non-zero with one clear line, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from . import __version__
from .errors import LLCudaError
from .installed import backends
from .process import ManagedProcess


def _doctor(args: argparse.Namespace) -> int:
    from .discovery import find_llama_server
    from .fit import check_gpu_compatibility

    report = check_gpu_compatibility()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"llcuda {__version__} on {report['platform']}")
    if report["gpus"]:
        for g in report["gpus"]:
            cc = ".".join(map(str, g["compute_capability"]))
            print(
                f"GPU {g['index']}: {g['name']}, CC {cc}, {g['memory_free_mb']}/{g['memory_total_mb']} MiB free, "
                f"driver {g['driver_version']}"
            )
        if len(report["gpus"]) > 1:
            print(
                f"GPUs: {len(report['gpus'])}, {report['memory_free_mb']}/{report['memory_total_mb']} MiB free in all "
                "(a model is split across them by layers: load_model(split_mode=, tensor_split=, main_gpu=))"
            )
    else:
        print("GPU: none found (no NVIDIA driver, or no GPU)")
    if report["backends"]:
        for target, fit in report["backends"].items():
            print(f"backend llcuda-{target}: {fit}")
            if target in report["driver_problems"]:
                print(f"  {report['driver_problems'][target]}")
        for backend in backends():
            extra, missing = backend.cuda_library_dirs()
            if missing:
                wheels = " ".join(f'"{w}"' for w in backend.build_info["cuda"].get("runtime_wheels", []))
                print(
                    f"  llcuda-{backend.target}: NVIDIA's CUDA libraries are not installed ({', '.join(missing)}); "
                    f"it runs on the CPU until they are: pip install {wheels}"
                )
            elif extra:
                print(f"  llcuda-{backend.target}: CUDA libraries from {', '.join(map(str, extra))}")
    else:
        print("backends: none installed")
    try:
        print(f"llama-server: {find_llama_server()}")
    except LLCudaError as err:
        print(f"llama-server: not found ({str(err).splitlines()[-1]})")
    print(report["recommendation"])
    downloads = ", ".join(report["install_downloads"])
    mb = f"about {report['install_download_mb']:.0f} MB of NVIDIA's CUDA wheels ({downloads})" if downloads else "0 MB"
    print(f"install for this machine: {report['install_pip']}")
    print(f"  downloads {mb} here, besides the llcuda wheels")
    print(f"  why: {report['install_why']}")
    if report["uv_target"] == report["recommended_target"]:
        print(f"  or with uv, which picks the backend by GPU (a preview): {report['install_uv']}")
    else:
        print(
            f"  uv's wheel variants would pick llcuda-{report['uv_target']} here (uv sees the driver, not this "
            f"environment's wheels); with uv: {report['install_uv']}"
        )
    return 0


def _backends(args: argparse.Namespace) -> int:
    from .discovery import find_llama_server
    from .fit import target_for, why_runs
    from .gpu import detect_gpus

    found = backends()
    gpus = detect_gpus()
    try:  # however each was installed (an extra, a wheel variant), the one discovery picks for this GPU runs
        runs: Path | None = find_llama_server(gpus)
    except LLCudaError:
        runs = None
    why = why_runs(found, gpus[0] if gpus else None)
    if args.json:
        listed = [
            {
                "target": b.target,
                "path": str(b.package_dir),
                "runs": b.llama_server == runs,
                "why": why[b.target],
                **b.build_info,
            }
            for b in found
        ]
        print(json.dumps(listed, indent=2))
        return 0
    if not found:
        line = f'pip install "llcuda[{target_for(gpus[0] if gpus else None)}]"'
        print(f"no backend installed: {line} (llcuda doctor says why)")
        return 1
    for b in found:
        info = b.build_info
        cuda = info["cuda"]
        where = (
            f"CUDA {cuda['toolkit_version']}, archs {','.join(cuda['architectures'])}"
            if cuda["architectures"]
            else "CPU"
        )
        mark = "  <- runs" if b.llama_server == runs else ""
        print(f"llcuda-{b.target}: llama.cpp {info['llama_cpp']['tag']} ({where}) {b.llama_server}{mark}")
        print(f"  {why[b.target]}")
    if runs is not None and all(b.llama_server != runs for b in found):
        print(f"runs: {runs} (LLAMA_SERVER_PATH or a build outside llcuda's backends)")
    return 0


def _engine(args: argparse.Namespace, **options: Any) -> Any:
    from .engine import InferenceEngine

    engine = InferenceEngine()
    if args.rpc:
        options["rpc"] = args.rpc
    for key in ("split_mode", "tensor_split", "main_gpu"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    try:
        engine.load_model(
            args.model, gpu_layers=args.gpu_layers, ctx_size=args.ctx_size, silent=not args.verbose, **options
        )
    except ValueError as err:  # a bad --rpc/--split-mode/--tensor-split/--main-gpu: one line, no traceback
        raise LLCudaError(str(err)) from None
    for host in engine.rpc_hosts:
        print(f"RPC {host.endpoint}: protocol {host.version}, {host.free_mb} MiB free", file=sys.stderr, flush=True)
    return engine


def _proportions(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected proportions like 3,1, not {text!r}") from None


def _rpc_server(args: argparse.Namespace) -> int:
    from .rpc import RPCServer

    try:
        server = RPCServer(
            args.host,
            args.port,
            allow_remote=args.allow_remote,
            devices=args.device.split(",") if args.device else None,
            threads=args.threads,
            cache=args.cache,
            verbose=args.verbose,
        )
    except ValueError as err:  # a bad --port: one line, no traceback
        raise LLCudaError(str(err)) from None
    try:
        server.start()
        print(server.describe(), flush=True)
        print(f'use it: load_model(..., rpc=["HOST:{args.port}"]) or llcuda serve MODEL --rpc HOST:{args.port}')
        print(f"log: {server.log_path}; Ctrl-C stops it", flush=True)
        _run_until_stopped(server, "ggml-rpc-server")
    finally:
        server.stop()
    print("stopped", flush=True)
    return 0


def _run_until_stopped(child: ManagedProcess, name: str) -> None:
    """Wait for Ctrl-C or SIGTERM; a child that dies meanwhile is an error with its last lines."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            if not child.is_running():
                raise LLCudaError(f"{name} stopped:\n{child.log_tail(10)}")
    except KeyboardInterrupt:
        pass


def _serve(args: argparse.Namespace) -> int:
    from .server import port_is_free

    if args.port is not None and not port_is_free(args.port):
        raise LLCudaError(f"port {args.port} is already in use; pass another --port")
    options: dict[str, Any] = {"port": args.port} if args.port else {}
    if args.embeddings:
        options.update(embeddings=True, pooling=args.pooling)
    elif args.pooling:
        raise LLCudaError("--pooling applies to embeddings: pass --embeddings too")
    engine = _engine(args, **options)
    what = "embeddings of " if args.embeddings else ""
    print(f"serving {what}{engine.model_path} at {engine.base_url}", flush=True)
    print(f"api key: {engine.api_key}", flush=True)
    print(
        f"attach from another process: InferenceEngine(server_url={engine.server_url!r}, api_key={engine.api_key!r})",
        flush=True,
    )
    try:
        _run_until_stopped(engine.server, "llama-server")
    finally:
        engine.unload_model()
    print("stopped", flush=True)
    return 0


def _selftest(args: argparse.Namespace) -> int:
    from .backendops import LLAMA_OPS, selftest

    ops = tuple(o for o in args.ops.split(",") if o) if args.ops else LLAMA_OPS
    if not args.json:
        what = f"llcuda-{args.backend}" if args.backend else "the backend that serves this machine"
        print(f"running llama.cpp's test-backend-ops ({len(ops)} ops) with {what}; this takes minutes", flush=True)
    result = selftest(args.backend, ops=ops, device=args.device)
    print(json.dumps(result.as_dict(), indent=2) if args.json else result.summary)
    return result.exit_code


def _run(args: argparse.Namespace) -> int:
    with _engine(args) as engine:
        for chunk in engine.infer_stream(args.prompt, max_tokens=args.max_tokens, temperature=args.temperature):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llcuda", description="llama.cpp for old and modest NVIDIA GPUs")
    parser.add_argument("--version", action="version", version=f"llcuda {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("doctor", help="GPU, driver, installed backends and what to install")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_doctor)
    p = sub.add_parser("backends", help="list the installed backends")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_backends)
    p = sub.add_parser(
        "selftest",
        help="llama.cpp's test-backend-ops on this GPU against the CPU: is the CUDA build correct on this card?",
    )
    p.add_argument("--backend", default=None, help="an installed target (cc50, cc75...; default: the one that runs)")
    p.add_argument("--ops", default=None, metavar="OP,...", help="ggml ops to test (default: a llama model's)")
    p.add_argument("--device", default=None, help="test only this device, e.g. CUDA1 (default: every GPU)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_selftest)
    for name, func, help_text in (
        ("serve", _serve, "serve MODEL over an OpenAI-compatible API until Ctrl-C"),
        ("run", _run, "stream the answer to PROMPT"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("model", help="a .gguf path, an alias, or owner/repo:file.gguf")
        if name == "run":
            p.add_argument("prompt")
            p.add_argument("--max-tokens", type=int, default=256)
            p.add_argument("--temperature", type=float, default=0.7)
        else:
            p.add_argument("--port", type=int, default=None)
            p.add_argument("--embeddings", action="store_true", help="serve /v1/embeddings (and nothing else)")
            p.add_argument(
                "--pooling", default=None, help="with --embeddings: mean, cls, last... (default: the model's, or mean)"
            )
        p.add_argument("--gpu-layers", default=None, help="layers to offload (default: fit to free VRAM)")
        p.add_argument("--ctx-size", type=int, default=None)
        p.add_argument("--rpc", default=None, metavar="HOST:PORT,...", help="add the devices of these RPC servers")
        p.add_argument("--split-mode", default=None, choices=["none", "layer", "row", "tensor"], help="across GPUs")
        p.add_argument("--tensor-split", type=_proportions, default=None, metavar="3,1", help="share per GPU")
        p.add_argument("--main-gpu", type=int, default=None)
        p.add_argument("--verbose", action="store_true", help="show the server's output")
        p.set_defaults(func=func)
    p = sub.add_parser(
        "rpc-server",
        help="serve this machine's devices to llama-server on another machine (no authentication: see --host)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=50052)
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host: anyone who reaches the port can use this machine's devices",
    )
    p.add_argument("--device", default=None, help="devices to serve, e.g. CUDA0,CUDA1 (default: every GPU)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for a CPU device")
    p.add_argument("--cache", action="store_true", help="keep received tensors on disk to speed up reloads")
    p.add_argument("--verbose", action="store_true", help="show the server's output")
    p.set_defaults(func=_rpc_server)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except LLCudaError as err:
        lines = str(err).splitlines()
        print(f"llcuda: error: {lines[0]}", file=sys.stderr)
        diagnosis = getattr(err, "diagnosis", "")
        if diagnosis:
            print(f"llcuda: {diagnosis}", file=sys.stderr)
        if len(lines) > 1 and getattr(args, "verbose", False):
            print("\n".join(lines[1:]), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
