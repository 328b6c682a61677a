"""Requests/s and p50/p99 latency of ``ltrkit serve`` on loopback: PyTorch vs ONNX Runtime backends.

A small run (``--model``, 136 synthetic MSLR-shaped features) is trained for one epoch and
exported to ONNX; then each backend is started as its own ``ltrkit serve`` process (PyTorch:
``--run``, ONNX Runtime: ``--model model.onnx``) and driven by 1 and 8 concurrent clients
(threads, one keep-alive ``httpx.Client`` each) posting the same request: one list of
``--docs`` documents x 136 dense features, serialised once. Each cell stops after
``--requests`` requests or ``--seconds`` seconds, whichever comes first; latency is per
request, measured by the client. Both backends' scores are checked to agree before any figure
is printed. Client and server share the machine's cores, as on a loopback deployment.

Usage: ``python benchmarks/bench_serve.py [--model mlp] [--docs 100] [--requests 400] [--seconds 15]``
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

import httpx
import numpy as np

N_FEATURES = 136
MODELS = {"mlp": {"hidden_sizes": [128, 64]}, "attention": {"d_model": 64, "n_heads": 4, "n_layers": 2, "ff_dim": 128}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: List[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-c", "from ltrkit.cli.main import app; app()", "serve", *args, "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read().decode()}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("server did not become ready in 120 s")


def drive(url: str, body: bytes, clients: int, requests: int, seconds: float) -> Dict[str, float]:
    latencies: List[float] = []
    lock = threading.Lock()
    remaining = [requests]
    stop_at = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60, headers={"content-type": "application/json"}) as session:
            while time.monotonic() < stop_at:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                start = time.perf_counter()
                response = session.post("/rank", content=body)
                elapsed = time.perf_counter() - start
                response.raise_for_status()
                with lock:
                    latencies.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    ms = np.asarray(latencies) * 1e3
    return {"requests": len(ms), "rps": len(ms) / wall, "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(MODELS), default="mlp")
    parser.add_argument("--docs", type=int, default=100, help="documents per list")
    parser.add_argument("--requests", type=int, default=400, help="most requests per cell")
    parser.add_argument("--seconds", type=float, default=15.0, help="most seconds per cell")
    args = parser.parse_args()

    import ltrkit
    from ltrkit.export import export_run

    with tempfile.TemporaryDirectory() as folder:
        config = {
            "data": {"synthetic": {"train_queries": 60, "vali_queries": 10, "test_queries": 10, "n_features": N_FEATURES, "mean_list_length": 30.0, "seed": 1}},
            "model": {"name": args.model, "args": MODELS[args.model]},
            "training": {"epochs": 1},
            "output": {"dir": folder, "name": "bench", "tensorboard": False, "plots": False},
        }
        run = Path(ltrkit.train(config).run_dir)
        export_run(run, Path(folder) / "model.onnx")
        features = np.random.default_rng(0).normal(size=(args.docs, N_FEATURES)).round(4)
        body = json.dumps({"lists": [{"documents": features.tolist()}]}).encode()
        rows, scores = [], {}
        for backend, serve_args in (("pytorch", ["--run", str(run)]), ("onnxruntime", ["--model", str(Path(folder) / "model.onnx")])):
            process, url = start_server(serve_args)
            try:
                answer = httpx.post(f"{url}/rank", content=body, headers={"content-type": "application/json"}, timeout=60).json()
                assert answer["model"]["backend"] == backend
                scores[backend] = np.asarray(answer["results"][0]["scores"])
                drive(url, body, 1, 20, args.seconds)  # warm-up
                for clients in (1, 8):
                    rows.append((backend, clients, drive(url, body, clients, args.requests, args.seconds)))
            finally:
                process.terminate()
                process.wait(timeout=30)
        gap = float(np.abs(scores["pytorch"] - scores["onnxruntime"]).max())
        assert gap < 1e-4, f"backends disagree by {gap}"

    print(f"ltrkit serve, {args.model} model, 1 list x {args.docs} docs x {N_FEATURES} features per request, {len(body) / 1024:.0f} KiB body, loopback, {os.cpu_count()} cores")
    print(f"{'backend':<12} {'clients':>7} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for backend, clients, figures in rows:
        print(f"{backend:<12} {clients:>7} {figures['requests']:>8} {figures['rps']:>8.1f} {figures['p50']:>8.2f} {figures['p99']:>8.2f}")
    print(f"max |score difference| between the backends: {gap:.2e}")


if __name__ == "__main__":
    main()
