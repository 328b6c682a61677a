"""A tiny trained run, its ONNX export, and live servers on free loopback ports."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import uvicorn

import ltrkit
from ltrkit.export import export_run

N_FEATURES = 10


class LiveServer:
    """``app`` under uvicorn in a thread, on a socket bound to a free loopback port."""

    def __init__(self, app: Any) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    config = {
        "data": {"synthetic": {"train_queries": 30, "vali_queries": 8, "test_queries": 8, "n_features": N_FEATURES, "mean_list_length": 10.0, "max_list_length": 25, "seed": 3}},
        "model": {"name": "attention", "args": {"d_model": 16, "n_heads": 2, "n_layers": 1, "ff_dim": 32}},
        "loss": {"name": "listnet", "args": {}},
        "training": {"epochs": 1, "batch_size": 8},
        "early_stopping": {"metric": "ndcg@10", "patience": None},
        "num_threads": 1,
        "output": {"dir": str(tmp_path_factory.mktemp("runs")), "name": "served", "tensorboard": False, "plots": False},
    }
    return Path(ltrkit.train(config).run_dir)


@pytest.fixture(scope="session")
def onnx_file(run_dir, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "served.onnx"
    export_run(run_dir, path)
    return path


@pytest.fixture(scope="module")
def live() -> Iterator[Any]:
    """``live(app) -> LiveServer``; every server started is stopped when the module ends."""
    servers = []

    def start(app: Any) -> LiveServer:
        servers.append(LiveServer(app))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
