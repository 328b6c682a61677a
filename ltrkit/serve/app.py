"""The re-ranking HTTP API (FastAPI): ``POST /rank``, ``GET /health``, ``/ready``, ``/metadata``, ``/docs``.

``POST /rank`` takes one or many lists of documents; a document is a dense array of the
model's ``F`` features or a sparse ``{"index": value}`` map in the run's LETOR index base
(absent features are 0). Each list may carry document ids. The answer gives, per list, the
scores in input order and the ranked order (document positions by decreasing score, ties in
input order), plus the ranked ids when ids were given.

Bad input never reaches the model: a body that is not JSON gets 400; a body over the size
limit, or more lists/documents than the limits allow, 413; a wrong feature count, NaN/inf, a
value beyond float32, a feature index out of range or ids that do not match the documents,
422. Every error body is ``{"error": "<one line saying what is wrong>"}`` (422 adds
``detail``, the individual problems).

    >>> app = create_app(load_exported("model.onnx"))         # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)          # doctest: +SKIP
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any, AsyncIterator, Dict, List, Optional, Union

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from typing_extensions import Annotated

from ltrkit.export.loaded import ExportedRanker

__all__ = ["Limits", "RankRequest", "RankResponse", "create_app"]

# a finite JSON number (Python's json module would otherwise accept NaN and Infinity)
Feature = Annotated[float, Field(allow_inf_nan=False)]
Document = Union[List[Feature], Dict[str, Feature]]
_MAX_DETAILS = 20


@dataclass(frozen=True)
class Limits:
    """Request limits of the service (all inclusive).

    Attributes:
        max_docs_per_list: most documents in one list.
        max_lists: most lists in one request.
        max_body_bytes: largest request body.
    """

    max_docs_per_list: int = 1000
    max_lists: int = 64
    max_body_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")


class RankList(BaseModel):
    """One list to rank."""

    model_config = ConfigDict(extra="forbid")
    documents: List[Document] = Field(
        min_length=1,
        description="documents: dense arrays of the model's n_features values, or {index: value} maps in the run's index base",
    )
    ids: Optional[List[str]] = Field(None, description="document ids, one per document (echoed in ranked order)")


class RankRequest(BaseModel):
    """Lists to rank (one or many)."""

    model_config = ConfigDict(extra="forbid")
    lists: List[RankList] = Field(min_length=1, description="the lists; each is scored as a whole")


class RankedList(BaseModel):
    scores: List[float] = Field(description="one score per document, in input order; higher = better")
    order: List[int] = Field(description="document positions (0-based) by decreasing score, ties in input order")
    ranked_ids: Optional[List[str]] = Field(None, description="the ids in ranked order, when ids were given")


class ModelInfo(BaseModel):
    name: str = Field(description="run name (or file name)")
    version: str = Field(description="first 12 hex digits of the training config's SHA-256")
    kind: str = Field(description="model kind: linear, mlp, attention, dasalc or ensemble")
    backend: str = Field(description="onnxruntime, torchscript or pytorch")


class RankResponse(BaseModel):
    model: ModelInfo
    results: List[RankedList]


class ErrorResponse(BaseModel):
    error: str = Field(description="what is wrong, on one line")
    detail: Optional[List[Dict[str, Any]]] = Field(None, description="the individual problems (validation errors)")


class MetadataResponse(BaseModel):
    model: ModelInfo
    n_features: int
    index_base: int = Field(description="first feature index of sparse documents")
    normalizer: str = Field(description="the normaliser folded into the model")
    model_args: Dict[str, Any] = Field(description="the model's hyperparameters")
    ltrkit_version: str
    config_sha256: str
    checkpoint: Optional[str]
    metrics: Optional[Dict[str, Any]] = Field(None, description="metrics of the run per split (report.json)")
    limits: Dict[str, int]
    source: str


_ERRORS: Dict[Union[int, str], Dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in ((400, "the body is not JSON"), (413, "over a size limit"), (422, "invalid documents"))
}


class _BodyLimit:
    """ASGI middleware: read the whole body, answering 413 as soon as it passes ``max_bytes``.

    A declared ``Content-Length`` over the limit is refused before reading; a chunked body is
    counted as it arrives. The buffered body is then replayed to the application.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        response = JSONResponse({"error": f"request body is larger than the limit of {self.max_bytes} bytes"}, status_code=413)
        await response(scope, receive, send)


def _model_info(ranker: ExportedRanker) -> ModelInfo:
    metadata = ranker.metadata
    name = metadata.get("run_name") or str(ranker.source)
    return ModelInfo(name=name, version=str(metadata["config_sha256"])[:12], kind=ranker.model_name, backend=ranker.backend)


def _validation_message(errors: List[Dict[str, Any]]) -> str:
    first = errors[0]
    if tuple(first.get("loc", ())) == ("body",):
        # no body, a JSON array/scalar, or a body not sent as application/json (then not parsed)
        return f'the body must be a JSON object {{"lists": [...]}} sent as application/json ({first.get("msg")})'
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{where or 'body'}: {first.get('msg', 'invalid')}{more}"


def create_app(ranker: ExportedRanker, *, limits: Limits = Limits(), index_base: Optional[int] = None) -> FastAPI:
    """The FastAPI application serving ``ranker``.

    Args:
        ranker: the scorer (its backend is whatever was loaded: ONNX Runtime, TorchScript, PyTorch).
        limits: request limits.
        index_base: first feature index of sparse documents; default the run's (1 for ``auto``).

    Raises:
        ValueError: ``index_base`` not 0 or 1.
    """
    base = ranker.index_base if index_base is None else index_base
    if base not in (0, 1) or isinstance(base, bool):
        raise ValueError(f"index_base must be 0 or 1, got {index_base!r}")
    n_features = ranker.n_features
    info = _model_info(ranker)
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # one warm-up call, so the first request does not pay for lazy initialisation
        ranker.score_padded(np.zeros((1, 1, n_features), dtype=np.float32), np.ones((1, 1), dtype=bool))
        state["ready"] = True
        yield
        state["ready"] = False

    app = FastAPI(
        title="ltrkit re-ranking service",
        version=info.version,
        description=f"Scores lists of documents with the {info.kind} model {info.name!r} ({n_features} features, index base {base}).",
        lifespan=lifespan,
    )
    app.add_middleware(_BodyLimit, max_bytes=limits.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        errors = [{key: item.get(key) for key in ("loc", "msg", "type")} for item in error.errors()]
        status = 400 if any(item["type"] == "json_invalid" for item in errors) else 422
        message = "the body is not valid JSON" if status == 400 else _validation_message(errors)
        return JSONResponse({"error": message, "detail": errors[:_MAX_DETAILS]}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=getattr(error, "headers", None))

    def document_row(document: Document, where: str, out: np.ndarray) -> None:
        if isinstance(document, list):
            if len(document) != n_features:
                raise HTTPException(422, f"{where}: has {len(document)} features, the model takes {n_features}")
            out[:] = document
            return
        for key, value in document.items():
            index = int(key) if key.isascii() and key.isdigit() else None
            if index is None:
                raise HTTPException(422, f"{where}: feature index {key!r} is not a non-negative integer")
            if not base <= index < base + n_features:
                raise HTTPException(422, f"{where}: feature index {index} is out of range {base}..{base + n_features - 1} (index base {base})")
            out[index - base] = value

    def padded_batch(lists: List[RankList]) -> tuple[np.ndarray, np.ndarray]:
        longest = max(len(item.documents) for item in lists)
        features = np.zeros((len(lists), longest, n_features), dtype=np.float32)
        mask = np.zeros((len(lists), longest), dtype=bool)
        # values beyond float32 become inf here and are reported below
        with np.errstate(over="ignore"):
            for row, item in enumerate(lists):
                for position, document in enumerate(item.documents):
                    document_row(document, f"lists.{row}.documents.{position}", features[row, position])
        for row, item in enumerate(lists):
            mask[row, : len(item.documents)] = True
        if not np.isfinite(features).all():
            row, position, column = np.argwhere(~np.isfinite(features))[0]
            raise HTTPException(422, f"lists.{row}.documents.{position}: feature {column + base} is beyond the float32 range")
        return features, mask

    @app.post("/rank", response_model=RankResponse, responses=_ERRORS, summary="Score and rank lists of documents")
    def rank(request: RankRequest) -> RankResponse:
        lists = request.lists
        if len(lists) > limits.max_lists:
            raise HTTPException(413, f"lists: {len(lists)} lists, the limit is {limits.max_lists} per request")
        for row, item in enumerate(lists):
            if len(item.documents) > limits.max_docs_per_list:
                raise HTTPException(413, f"lists.{row}.documents: {len(item.documents)} documents, the limit is {limits.max_docs_per_list} per list")
            if item.ids is not None and len(item.ids) != len(item.documents):
                raise HTTPException(422, f"lists.{row}.ids: {len(item.ids)} ids for {len(item.documents)} documents")
        features, mask = padded_batch(lists)
        scores = ranker.score_padded(features, mask)
        results = []
        for row, item in enumerate(lists):
            values = scores[row, : len(item.documents)]
            if not np.isfinite(values).all():
                raise HTTPException(422, f"lists.{row}: the model gives a non-finite score (features far outside the training range?)")
            order = np.argsort(-values, kind="stable")
            ranked_ids = None if item.ids is None else [item.ids[i] for i in order]
            results.append(RankedList(scores=values.tolist(), order=order.tolist(), ranked_ids=ranked_ids))
        return RankResponse(model=info, results=results)

    @app.get("/health", summary="Liveness: the process answers")
    def health() -> Dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness: the model is loaded and warmed up", responses={503: {"description": "not ready"}})
    def ready() -> JSONResponse:
        return JSONResponse({"ready": state["ready"]}, status_code=200 if state["ready"] else 503)

    metadata = ranker.metadata
    description = MetadataResponse(
        model=info,
        n_features=n_features,
        index_base=base,
        normalizer=metadata["normalizer"]["method"],
        model_args=metadata["model"]["config"],
        ltrkit_version=metadata["ltrkit_version"],
        config_sha256=metadata["config_sha256"],
        checkpoint=metadata.get("checkpoint"),
        metrics=metadata.get("metrics"),
        limits=asdict(limits),
        source=str(ranker.source),
    )

    @app.get("/metadata", response_model=MetadataResponse, summary="The model, its features and the run's metrics")
    def describe() -> MetadataResponse:
        return description

    return app
