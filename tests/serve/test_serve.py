"""The re-ranking service over real loopback HTTP: valid and invalid requests, both backends,
SIGTERM, and schemathesis fuzzing from the service's own OpenAPI schema (no 5xx, responses match it)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from serve_support import N_FEATURES, LiveServer
from typer.testing import CliRunner

import ltrkit
from ltrkit.cli.main import app as cli
from ltrkit.export import ExportedRanker, export_run, load_exported
from ltrkit.serve import Limits, create_app
from ltrkit.training import Ranker

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SMALL = Limits(max_docs_per_list=5, max_lists=3, max_body_bytes=4096)


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module", params=["pytorch", "onnxruntime"])
def server(request, live, run_dir, onnx_file):
    ranker = ExportedRanker.from_run(run_dir) if request.param == "pytorch" else load_exported(onnx_file)
    return live(create_app(ranker))


@pytest.fixture(scope="module")
def small_server(live, onnx_file):
    return live(create_app(load_exported(onnx_file), limits=SMALL))


def _lists(seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.normal(2.0, 3.0, size=(length, N_FEATURES)).astype(np.float32) for length in (1, 4, 17)]


def test_rank_scores_equal_offline_scores_and_order_sorts_them(server, run_dir):
    lists = _lists()
    body = {"lists": [{"documents": lists[0].tolist()}, {"documents": lists[1].tolist(), "ids": ["a", "b", "c", "d"]}, {"documents": lists[2].tolist()}]}
    response = httpx.post(f"{server.url}/rank", json=body, timeout=30)
    assert response.status_code == 200, response.text
    answer = response.json()
    offsets = np.cumsum([0] + [len(item) for item in lists])
    expected = Ranker.load(run_dir).predict_features(np.concatenate(lists), offsets)
    for item, result, start, stop in zip(body["lists"], answer["results"], offsets[:-1], offsets[1:]):
        np.testing.assert_allclose(result["scores"], expected[start:stop], rtol=1e-5, atol=1e-5)
        assert result["order"] == sorted(range(len(result["scores"])), key=lambda i: (-result["scores"][i], i))
        if "ids" in item:
            assert result["ranked_ids"] == [item["ids"][i] for i in result["order"]]
        else:
            assert result["ranked_ids"] is None
    metadata = json.loads((run_dir / "config.resolved.json").read_text())
    assert answer["model"]["name"] == "served" and answer["model"]["kind"] == metadata["model"]["name"]
    assert re.fullmatch("[0-9a-f]{12}", answer["model"]["version"])


def test_sparse_documents_equal_dense_ones_in_the_run_index_base(server):
    dense = np.zeros((3, N_FEATURES), dtype=np.float32)
    dense[0, [0, 4]] = [1.5, -2.0]
    dense[1, N_FEATURES - 1] = 3.0
    sparse = [{"1": 1.5, "5": -2.0}, {str(N_FEATURES): 3.0}, {}]
    responses = [httpx.post(f"{server.url}/rank", json={"lists": [{"documents": docs}]}, timeout=30) for docs in (dense.tolist(), sparse)]
    assert [r.status_code for r in responses] == [200, 200]
    assert responses[0].json()["results"] == responses[1].json()["results"]


def test_health_ready_metadata_and_docs(server, run_dir):
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/ready").json() == {"ready": True}
    metadata = httpx.get(f"{server.url}/metadata").json()
    trained_with = json.loads((run_dir / "normalizer.json").read_text())["method"]
    assert metadata["n_features"] == N_FEATURES and metadata["index_base"] == 1 and metadata["normalizer"] == trained_with
    assert metadata["metrics"] == json.loads((run_dir / "report.json").read_text())["metrics"]
    assert metadata["limits"] == {"max_docs_per_list": 1000, "max_lists": 64, "max_body_bytes": 8 * 1024 * 1024}
    assert metadata["model"]["backend"] in ("pytorch", "onnxruntime")
    docs = httpx.get(f"{server.url}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "/rank" in httpx.get(f"{server.url}/openapi.json").json()["paths"]


def _dense(n: int = 1, width: int = N_FEATURES) -> list:
    return [[0.5] * width for _ in range(n)]


INVALID = [
    # (raw body or JSON object, status, message)
    (b"{not json", 400, "the body is not valid JSON"),
    (b"", 422, "the body must be a JSON object {\"lists\": \\[...\\]} sent as application/json \\(Field required\\)"),
    (b"[1, 2]", 422, "the body must be a JSON object"),
    ({"lists": []}, 422, "lists: List should have at least 1 item"),
    ({"lists": [{"documents": []}]}, 422, "lists.0.documents: List should have at least 1 item"),
    ({"lists": [{"documents": _dense(1, 9)}]}, 422, f"lists.0.documents.0: has 9 features, the model takes {N_FEATURES}"),
    (b'{"lists": [{"documents": [[NaN, 1, 1, 1, 1, 1, 1, 1, 1, 1]]}]}', 422, "lists.0.documents.0.list\\[float\\].0: Input should be a finite number"),
    (b'{"lists": [{"documents": [[1e400, 1, 1, 1, 1, 1, 1, 1, 1, 1]]}]}', 422, "Input should be a finite number"),
    ({"lists": [{"documents": [[1e39] + [0.0] * (N_FEATURES - 1)]}]}, 422, "lists.0.documents.0: feature 1 is beyond the float32 range"),
    ({"lists": [{"documents": [{str(N_FEATURES + 1): 1.0}]}]}, 422, f"feature index {N_FEATURES + 1} is out of range 1..{N_FEATURES} \\(index base 1\\)"),
    ({"lists": [{"documents": [{"0": 1.0}]}]}, 422, f"feature index 0 is out of range 1..{N_FEATURES}"),
    ({"lists": [{"documents": [{"x": 1.0}]}]}, 422, "feature index 'x' is not a non-negative integer"),
    ({"lists": [{"documents": _dense(2), "ids": ["a"]}]}, 422, "lists.0.ids: 1 ids for 2 documents"),
    ({"lists": [{"documents": _dense(1)}], "extra": 1}, 422, "extra: Extra inputs are not permitted"),
    ({"lists": [{"documents": _dense(1)}] * 4}, 413, "lists: 4 lists, the limit is 3 per request"),
    ({"lists": [{"documents": _dense(6)}]}, 413, "lists.0.documents: 6 documents, the limit is 5 per list"),
    ({"lists": [{"documents": _dense(120)}]}, 413, "request body is larger than the limit of 4096 bytes"),
]


@pytest.mark.parametrize(("body", "status", "message"), INVALID)
def test_bad_requests_get_4xx_with_a_one_line_message(small_server, body, status, message):
    if isinstance(body, bytes):
        response = httpx.post(f"{small_server.url}/rank", content=body, headers={"content-type": "application/json"}, timeout=30)
    else:
        response = httpx.post(f"{small_server.url}/rank", json=body, timeout=30)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert "\n" not in error and re.search(message, error), error


def test_a_body_not_sent_as_json_is_refused(small_server):
    response = httpx.post(f"{small_server.url}/rank", content=json.dumps({"lists": [{"documents": _dense(1)}]}), headers={"content-type": "text/plain"})
    assert response.status_code == 422 and "sent as application/json" in response.json()["error"]


def test_chunked_body_over_the_limit_is_refused(small_server):
    def chunks():
        yield b'{"lists": [{"documents": ['
        for _ in range(100):
            yield b"[0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5],"
        yield b"[0.5]]}]}"

    response = httpx.post(f"{small_server.url}/rank", content=chunks(), headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 413 and "4096 bytes" in response.json()["error"]
    # the server keeps serving
    assert httpx.post(f"{small_server.url}/rank", json={"lists": [{"documents": _dense(2)}]}, timeout=30).status_code == 200


def test_wrong_method_and_unknown_path(small_server):
    assert httpx.get(f"{small_server.url}/rank").status_code == 405
    response = httpx.get(f"{small_server.url}/nothing")
    assert response.status_code == 404 and response.json() == {"error": "Not Found"}


def test_index_base_zero(live, onnx_file):
    server = live(create_app(load_exported(onnx_file), index_base=0))
    zero = httpx.post(f"{server.url}/rank", json={"lists": [{"documents": [{"0": 2.0}]}]}, timeout=30)
    one = httpx.post(f"{server.url}/rank", json={"lists": [{"documents": [[2.0] + [0.0] * (N_FEATURES - 1)]}]}, timeout=30)
    assert zero.json()["results"] == one.json()["results"]
    assert "out of range 0..9" in httpx.post(f"{server.url}/rank", json={"lists": [{"documents": [{"10": 1.0}]}]}, timeout=30).json()["error"]


# ------------------------------------------------------------------- the command, as a process


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_process_exits_0_promptly_on_sigterm(onnx_file):
    port = _free_port()
    command = [sys.executable, "-c", "from ltrkit.cli.main import app; app()", "serve", "--model", str(onnx_file), "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stderr.read().decode()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.2)
        assert httpx.post(f"http://127.0.0.1:{port}/rank", json={"lists": [{"documents": _dense(3)}]}, timeout=30).status_code == 200
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, process.stderr.read().decode()
        assert time.monotonic() - started < 10
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give either --run RUN_DIR or --model FILE"),
        (["--run", "RUN", "--model", "MODEL"], "give either --run RUN_DIR or --model FILE"),
        (["--model", "/no/such/model.onnx"], "model file not found: '/no/such/model.onnx'"),
        (["--model", "MODEL", "--max-lists", "0"], "max_lists must be a positive int, got 0"),
        (["--model", "MODEL", "--index-base", "2"], "--index-base must be 0 or 1, got 2"),
        (["--model", "MODEL", "--threads", "0"], "threads must be a positive int, got 0"),
    ],
)
def test_serve_bad_input_exits_2_with_one_line(run_dir, onnx_file, args, message):
    args = [str(run_dir) if a == "RUN" else str(onnx_file) if a == "MODEL" else a for a in args]
    result = CliRunner().invoke(cli, ["serve", *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"error: {message}"


def test_serve_without_fastapi_names_the_extra(onnx_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)
    result = CliRunner().invoke(cli, ["serve", "--model", str(onnx_file)])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: the HTTP service needs fastapi: pip install 'ltrkit[serve]'"


# ------------------------------------------------------------------------ fuzzing


def test_every_operation_survives_generated_requests(live, onnx_file):
    server = live(create_app(load_exported(onnx_file), limits=Limits(max_docs_per_list=20, max_lists=4, max_body_bytes=64 * 1024)))
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert sorted(operation.path for operation in operations) == ["/health", "/metadata", "/rank", "/ready"]
    for operation in operations:

        # a bounded number of generated requests per operation, so the test takes seconds
        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case):
            case.call_and_validate(checks=CHECKS, timeout=30)

        call()
