"""Click-behaviour specs: JSON/YAML (or a dict, or a built-in name) -> a :class:`ClickBehaviour`.

A spec is a mapping with a ``name`` and that behaviour's fields; composites nest specs::

    {"name": "mixture", "probabilities": [0.8, 0.2],
     "models": [{"name": "pbm", "eta": 1.0, "attraction": {"kind": "binary", "threshold": 2}},
                {"name": "max_clicks", "max_clicks": 1, "model": {"name": "random", "n_clicks": 2}}]}

Names: the probabilistic models ``pbm``, ``ubm``, ``cm`` (or ``cascade``), ``dcm``, ``dbn``,
``sdbn`` (each with an ``attraction`` mapping, see :class:`MappingSpec`), and the behaviours
``random``, ``fixed``, ``only_relevant``, ``threshold_cascade``, ``max_clicks``, ``mixture``,
``and``, ``or``, ``everything_but_duplicates``, ``diverse``. A bare name (``"pbm"``, at the top or
inside a composite) means that model with its defaults. Validation follows :mod:`ltrkit.training.config`: unknown fields and bad values
anywhere in the tree are all reported at once (:class:`~ltrkit.training.config.ConfigError`),
each with its dotted path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional, Type, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ltrkit.clicks import behaviours as b
from ltrkit.clicks.mappings import AttractionMapping, Propensities
from ltrkit.clicks.models import DBN, DCM, PBM, SDBN, UBM, CascadeModel
from ltrkit.training.config import ConfigError, read_config_file

__all__ = ["SPECS", "MappingSpec", "load_click_spec", "build_behaviour"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MappingSpec(_Strict):
    """Relevance -> probability (:class:`~ltrkit.clicks.mappings.AttractionMapping`)."""

    kind: Literal["graded", "binary"] = Field("graded", description="graded: (2^y - 1)/(2^max - 1); binary: y >= threshold")
    max_grade: Optional[float] = Field(None, gt=0, description="top grade of the graded form (None: the data's largest label)")
    threshold: float = Field(1.0, description="relevance at or above which a document is relevant (binary)")
    epsilon_minus: float = Field(0.1, ge=0, le=1, description="probability for a non-relevant document (click noise)")
    epsilon_plus: float = Field(1.0, ge=0, le=1, description="probability for a relevant / top-grade document")

    @model_validator(mode="after")
    def _ordered(self) -> "MappingSpec":
        if self.epsilon_minus > self.epsilon_plus:
            raise ValueError(f"epsilon_minus ({self.epsilon_minus}) must not exceed epsilon_plus ({self.epsilon_plus})")
        return self

    def build(self) -> AttractionMapping:
        return AttractionMapping(self.kind, self.max_grade, self.threshold, self.epsilon_minus, self.epsilon_plus)


class _ModelSpec(_Strict):
    attraction: MappingSpec = Field(default_factory=MappingSpec, description="relevance -> attraction")


class PBMSpec(_ModelSpec):
    name: Literal["pbm"]
    eta: float = Field(1.0, ge=0, description="examination (1/rank)^eta")
    propensities: Optional[List[float]] = Field(None, min_length=1, description="explicit examination per rank (instead of eta)")

    def build(self) -> b.ClickBehaviour:
        return b.ModelClicks(PBM(Propensities(self.eta, self.propensities)), self.attraction.build())


class UBMSpec(_ModelSpec):
    name: Literal["ubm"]
    eta: float = Field(1.0, ge=0, description="examination (1/(rank - previous click rank))^eta")
    gamma: Optional[List[List[float]]] = Field(None, description="explicit [K, K] table gamma[r-1][r'] (instead of eta)")

    def build(self) -> b.ClickBehaviour:
        return b.ModelClicks(UBM(self.gamma, self.eta), self.attraction.build())


class CMSpec(_ModelSpec):
    name: Literal["cm", "cascade"]

    def build(self) -> b.ClickBehaviour:
        return b.ModelClicks(CascadeModel(), self.attraction.build())


class DCMSpec(_ModelSpec):
    name: Literal["dcm"]
    continuation: Union[float, List[float]] = Field(0.5, description="P(continue after a click at rank r): one value or one per rank")

    def build(self) -> b.ClickBehaviour:
        return b.ModelClicks(DCM(self.continuation), self.attraction.build())


class DBNSpec(_ModelSpec):
    name: Literal["dbn"]
    gamma: float = Field(0.9, gt=0, le=1, description="P(continue) after an unsatisfying rank")
    satisfaction: Optional[MappingSpec] = Field(None, description="relevance -> satisfaction after a click (None: the attraction mapping)")

    def build(self) -> b.ClickBehaviour:
        return b.ModelClicks(DBN(self.gamma), self.attraction.build(), self.satisfaction.build() if self.satisfaction else None)


class SDBNSpec(_ModelSpec):
    name: Literal["sdbn"]
    satisfaction: Optional[MappingSpec] = Field(None, description="relevance -> satisfaction after a click (None: the attraction mapping)")

    def build(self) -> b.ClickBehaviour:
        return b.ModelClicks(SDBN(), self.attraction.build(), self.satisfaction.build() if self.satisfaction else None)


class RandomSpec(_Strict):
    name: Literal["random"]
    n_clicks: int = Field(1, ge=1, description="clicks per session, on uniformly drawn positions")

    def build(self) -> b.ClickBehaviour:
        return b.RandomClicks(self.n_clicks)


class FixedSpec(_Strict):
    name: Literal["fixed"]
    positions: List[int] = Field(min_length=1, description="1-based positions that are clicked")

    @model_validator(mode="after")
    def _positive(self) -> "FixedSpec":
        if any(p < 1 for p in self.positions):
            raise ValueError(f"positions are 1-based, got {self.positions}")
        return self

    def build(self) -> b.ClickBehaviour:
        return b.FixedClicks(self.positions)


class OnlyRelevantSpec(_Strict):
    name: Literal["only_relevant"]
    threshold: float = Field(1.0, description="click documents with relevance >= threshold")

    def build(self) -> b.ClickBehaviour:
        return b.OnlyRelevant(self.threshold)


class ThresholdCascadeSpec(_Strict):
    name: Literal["threshold_cascade"]
    eta: float = Field(1.0, ge=0, description="rank r observed with probability (1/r)^eta")
    threshold: float = Field(1.0, description="click the first observed document with relevance >= threshold")

    def build(self) -> b.ClickBehaviour:
        return b.ThresholdCascade(self.eta, self.threshold)


class EverythingButDuplicatesSpec(_Strict):
    name: Literal["everything_but_duplicates"]
    distance: float = Field(0.0, ge=0, description="a document within this feature distance of one above is a duplicate")

    def build(self) -> b.ClickBehaviour:
        return b.EverythingButDuplicates(self.distance)


# composites: their child specs are validated by _validate (so errors carry clean paths)


class MaxClicksSpec(_Strict):
    name: Literal["max_clicks"]
    model: Any = Field(description="the inner click spec")
    max_clicks: int = Field(ge=1, description="keep at most this many (the highest-ranked) clicks")


class MixtureSpec(_Strict):
    name: Literal["mixture"]
    models: List[Any] = Field(min_length=1, description="click specs; each session follows one")
    probabilities: List[float] = Field(min_length=1, description="probability of each model (>= 0, summing to 1)")

    @model_validator(mode="after")
    def _distribution(self) -> "MixtureSpec":
        if len(self.probabilities) != len(self.models):
            raise ValueError(f"give one probability per model: {len(self.models)} models, {len(self.probabilities)} probabilities")
        if any(p < 0 for p in self.probabilities) or abs(sum(self.probabilities) - 1.0) > 1e-9:
            raise ValueError(f"probabilities must be >= 0 and sum to 1, got {self.probabilities}")
        return self


class AndSpec(_Strict):
    name: Literal["and"]
    models: List[Any] = Field(min_length=2, description="click where all of these click")


class OrSpec(_Strict):
    name: Literal["or"]
    models: List[Any] = Field(min_length=2, description="click where any of these clicks")


class DiverseSpec(_Strict):
    name: Literal["diverse"]
    model: Any = Field(description="the inner click spec")
    percentile: float = Field(ge=0, le=100, description="drop a click closer than this percentile of the list's distances to an earlier click")


SPECS: Dict[str, Type[_Strict]] = {
    "pbm": PBMSpec, "ubm": UBMSpec, "cm": CMSpec, "cascade": CMSpec, "dcm": DCMSpec, "dbn": DBNSpec, "sdbn": SDBNSpec,
    "random": RandomSpec, "fixed": FixedSpec, "only_relevant": OnlyRelevantSpec, "threshold_cascade": ThresholdCascadeSpec,
    "everything_but_duplicates": EverythingButDuplicatesSpec, "max_clicks": MaxClicksSpec, "mixture": MixtureSpec,
    "and": AndSpec, "or": OrSpec, "diverse": DiverseSpec,
}
_CHILD = {"max_clicks": "model", "diverse": "model", "mixture": "models", "and": "models", "or": "models"}


def _join(path: str, part: object) -> str:
    return f"{path}.{part}" if path else str(part)


def _errors_of(error: ValidationError, spec: Type[_Strict], path: str) -> List[str]:
    lines = []
    for item in error.errors(include_url=False):
        where = path
        for part in item["loc"]:
            where = _join(where, part)
        if item["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown field; allowed: {sorted(spec.model_fields)}")
            continue
        message = item["msg"].removeprefix("Value error, ")
        received = item.get("input")
        shown = "" if isinstance(received, dict) or "got " in message else f" (got {received!r})"
        lines.append(f"{where or '<top level>'}: {message}{shown}")
    return lines


def _validate(node: Any, path: str, errors: List[str]) -> Optional[b.ClickBehaviour]:
    """Validate one spec node (and its children), append every problem to ``errors``, build it if clean."""
    if isinstance(node, str) and node in SPECS:
        node = {"name": node}  # a built-in name inside a composite means its defaults
    if not isinstance(node, Mapping):
        errors.append(f"{path or '<top level>'}: a click spec must be a mapping with a 'name', got {node!r}")
        return None
    name = node.get("name")
    if name not in SPECS:
        errors.append(f"{_join(path, 'name')}: unknown click model {name!r}; choose from {sorted(SPECS)}")
        return None
    spec_class = SPECS[name]
    before = len(errors)
    spec = None
    try:
        spec = spec_class.model_validate(dict(node))
    except ValidationError as error:
        errors.extend(_errors_of(error, spec_class, path))
    child = _CHILD.get(name)
    children: List[Optional[b.ClickBehaviour]] = []
    if child is not None and child in node:
        value = node[child]
        if child == "model":
            children = [_validate(value, _join(path, child), errors)]
        elif isinstance(value, list):
            children = [_validate(item, _join(_join(path, child), i), errors) for i, item in enumerate(value)]
    if len(errors) > before or spec is None:
        return None
    if child is None:
        try:
            return spec.build()  # type: ignore[attr-defined]
        except ValueError as error:  # checks that need the values together (a gamma table's shape)
            errors.append(f"{path or '<top level>'}: {error}")
            return None
    if name == "max_clicks":
        return b.MaxClicks(children[0], spec.max_clicks)  # type: ignore[attr-defined, arg-type]
    if name == "diverse":
        return b.DiverseClicks(children[0], spec.percentile)  # type: ignore[attr-defined, arg-type]
    if name == "mixture":
        return b.Mixture(children, spec.probabilities)  # type: ignore[attr-defined, arg-type]
    return (b.AllOf if name == "and" else b.AnyOf)(children)  # type: ignore[arg-type]


def build_behaviour(spec: Mapping[str, Any], *, source: str = "click spec") -> b.ClickBehaviour:
    """Validate a spec mapping and build its behaviour.

    Raises:
        ConfigError: listing every problem, each with its dotted path.

    Example:
        >>> type(build_behaviour({"name": "max_clicks", "max_clicks": 1, "model": {"name": "pbm"}})).__name__
        'MaxClicks'
        >>> build_behaviour({"name": "pbm", "eta": -1, "colour": 1})
        Traceback (most recent call last):
        ...
        ltrkit.training.config.ConfigError: click spec has 2 error(s):
          - eta: Input should be greater than or equal to 0 (got -1)
          - colour: unknown field; allowed: ['attraction', 'eta', 'name', 'propensities']
    """
    errors: List[str] = []
    behaviour = _validate(spec, "", errors)
    if errors or behaviour is None:
        raise ConfigError(errors, source=source)
    return behaviour


def load_click_spec(source: Union[str, Path, Mapping[str, Any]]) -> b.ClickBehaviour:
    """A behaviour from a built-in name (``"pbm"``: its defaults), a ``.json``/``.yaml`` file or a mapping.

    Raises:
        ConfigError: an unknown name that is not a file, a bad file, or bad fields (all listed).
    """
    if isinstance(source, Mapping):
        return build_behaviour(source)
    text = str(source)
    if text in SPECS and not Path(text).is_file():
        return build_behaviour({"name": text}, source=text)
    if not Path(text).is_file():
        raise ConfigError([f"neither a built-in click model ({sorted(SPECS)}) nor a spec file"], source=text)
    return build_behaviour(read_config_file(text), source=text)
