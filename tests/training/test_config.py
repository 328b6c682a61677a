"""Config schema, files, overrides and registry checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import ltrkit.losses
from ltrkit.models import model_hyperparameters
from ltrkit.models import names as model_names
from ltrkit.training.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_to_yaml,
    load_config,
    parse_override,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
SHIPPED = sorted(CONFIG_DIR.glob("*.json")) + sorted(CONFIG_DIR.glob("*.yaml"))


def test_configs_are_shipped():
    names = {path.name for path in SHIPPED}
    assert {"default.json", "mslr_web30k.json", "mq2008.json", "lightgbm_rank.json"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_validates(path):
    config = load_config(path)
    assert isinstance(config, TrainConfig)
    # the resolved config is itself a valid config that resolves to the same thing
    assert load_config(config.to_dict()) == config


def test_default_json_is_the_built_in_default_job():
    shipped = load_config(CONFIG_DIR / "default.json")
    assert shipped.model == TrainConfig().model
    assert shipped.loss == TrainConfig().loss
    assert shipped.data.train is None


def test_empty_config_is_the_defaults():
    assert load_config({}) == TrainConfig()
    assert load_config(None) == TrainConfig()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("training.epochs=3", (["training", "epochs"], 3)),
        ("optimizer.lr=1e-3", (["optimizer", "lr"], 1e-3)),
        ("model.name=mlp", (["model", "name"], "mlp")),
        ("model.args.hidden_sizes=[8, 4]", (["model", "args", "hidden_sizes"], [8, 4])),
        ("early_stopping.patience=null", (["early_stopping", "patience"], None)),
        ("data.cache=false", (["data", "cache"], False)),
        ('output.name="007"', (["output", "name"], "007")),
        ("output.name=a=b", (["output", "name"], "a=b")),
    ],
)
def test_parse_override(text, expected):
    assert parse_override(text) == expected


@pytest.mark.parametrize(("text", "match"), [("training.epochs", "key.path=value"), ("=3", "key.path=value"), ("a..b=1", "empty segment")])
def test_parse_override_rejects(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_override(text)


def test_apply_overrides_creates_sections_and_copies():
    raw = {"training": {"epochs": 5}, "data": {"synthetic": None}}
    out = apply_overrides(raw, ["training.batch_size=8", "data.synthetic.train_queries=10", "loss.args.sigma=2"])
    assert out == {
        "training": {"epochs": 5, "batch_size": 8},
        "data": {"synthetic": {"train_queries": 10}},
        "loss": {"args": {"sigma": 2}},
    }
    assert raw == {"training": {"epochs": 5}, "data": {"synthetic": None}}
    assert apply_overrides({}, {"seed": 4, "training.epochs": 2}) == {"seed": 4, "training": {"epochs": 2}}


def test_overrides_reach_the_validated_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  epochs: 4\nmodel:\n  name: linear\n")
    config = load_config(path, ["training.epochs=2", "optimizer.name=sgd", "optimizer.momentum=0.9"])
    assert (config.training.epochs, config.model.name, config.optimizer.name, config.optimizer.momentum) == (2, "linear", "sgd", 0.9)


def test_every_bad_field_is_reported_at_once():
    raw = {
        "training": {"epochs": 0, "bogus": 1},
        "optimizer": {"name": "rmsprop"},
        "device": "tpu",
        "data": {"index_base": 2},
        "model": {"name": "mlpx"},
        "loss": {"name": "lambdarank", "args": {"sigmaa": 1.0}},
        "evaluation": {"metrics": ["ndcg@10", "ndgc@5"]},
    }
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    errors = info.value.errors
    text = "\n".join(errors)
    assert len(errors) == 8, text
    assert "training.epochs: Input should be greater than or equal to 1 (got 0)" in text
    assert "training.bogus: unknown field; allowed: ['batch_size'," in text
    assert "optimizer.name: Input should be 'adamw', 'adam' or 'sgd' (got 'rmsprop')" in text
    assert "device: must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'tpu'" in text
    assert "data.index_base: Input should be 'auto', 0 or 1 (got 2)" in text
    assert f"model.name: unknown model 'mlpx'; choose from {model_names()}" in text
    assert "loss.args: loss 'lambdarank' got unknown argument(s) ['sigmaa']" in text
    assert text.count("evaluation.metrics.1:") == 1 and "ndgc@5" in text


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"loss": {"name": "lambdarnk"}}, r"loss\.name: unknown list loss 'lambdarnk'; choose from \[.*'lambdarank'"),
        ({"loss": {"name": "triplet"}}, r"loss\.name: unknown list loss 'triplet'"),
        ({"loss": {"name": "lambdarank", "args": {"sigma": -1.0}}}, r"loss\.args: loss 'lambdarank' rejects \{'sigma': -1\.0\}: .*sigma"),
        ({"loss": {"name": "listnet", "args": {"reduction": "sum"}}}, r"loss\.args: .*unknown argument\(s\) \['reduction'\]"),
        ({"model": {"name": "mlp", "args": {"dropout": 3}}}, r"model\.args: model 'mlp' rejects \{'dropout': 3\}: .*dropout"),
        ({"model": {"name": "mlp", "args": {"hidden": [3]}}}, r"model\.args: model 'mlp' got unknown argument\(s\) \['hidden'\]; it takes \[.*'hidden_sizes'"),
        ({"model": {"name": None}}, r"model\.name: Input should be a valid string"),
        ({"normalization": "ztransform"}, r"normalization: .*ztransform"),
        ({"early_stopping": {"metric": "accuracy"}}, r"early_stopping\.metric: .*accuracy"),
        ({"expected": {"test": {"ndcg@x": 0.5}}}, r"expected\.test\.ndcg@x"),
        ({"expected": {"train": {"ndcg@10": 0.5}}}, r"expected\.train"),
        ({"data": {"train": "a.txt", "synthetic": {}}}, r"either data\.train .* or data\.synthetic"),
        ({"data": {"test": "a.txt"}}, r"data\.train is not"),
        ({"data": {"train": "a", "vali": "b", "vali_fraction": 0.2}}, r"either data\.vali or data\.vali_fraction"),
        ({"optimizer": {"name": "adam", "momentum": 0.9}}, r"momentum/nesterov apply to sgd only"),
        ({"output": {"name": "a/b"}}, r"output\.name: must be a plain folder name"),
        ({"schedule": {"name": "linear"}}, r"schedule\.name: Input should be 'constant', 'cosine' or 'step'"),
        ({"training": {"mixed_precision": "int8"}}, r"training\.mixed_precision"),
        ({"seed": "abc"}, r"seed: Input should be a valid integer"),
    ],
)
def test_bad_config_messages(raw, match):
    with pytest.raises(ConfigError, match=match):
        load_config(raw)


def test_component_without_name_is_the_default_with_args_updated():
    default = TrainConfig().model
    config = load_config({}, ["model.args.dropout=0.3"])
    assert config.model.name == default.name
    assert config.model.args == {**default.args, "dropout": 0.3}
    # naming a component drops the default's args
    assert load_config({}, ["model.name=linear"]).model.args == {}


def test_component_checks_follow_the_registries():
    for name in ltrkit.losses.names(kind="list"):
        load_config({"loss": {"name": name}})
    assert set(model_hyperparameters("mlp")) >= {"hidden_sizes", "dropout"}
    load_config({"model": {"name": "attention", "args": {"n_layers": 1}}})


@pytest.mark.parametrize(
    ("content", "suffix", "match"),
    [
        ('{"training": {"epochs": 2,}}', ".json", r"line 1, column \d+: invalid JSON"),
        ("training: [1, 2", ".yaml", "invalid YAML"),
        ("[1, 2]", ".json", "the top level must be a mapping"),
        ("{}", ".toml", "unknown config suffix '.toml'"),
    ],
)
def test_bad_config_files(tmp_path, content, suffix, match):
    path = tmp_path / f"config{suffix}"
    path.write_text(content)
    with pytest.raises(ConfigError, match=match) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.json")


def test_documented_yaml_round_trips():
    text = config_to_yaml()
    assert "# peak learning rate" in text and "# maximum number of epochs" in text
    assert load_config(yaml.safe_load(text)) == TrainConfig()
    custom = load_config({"model": {"name": "linear"}, "training": {"epochs": 2}, "expected": {"test": {"ndcg@10": 0.25}}})
    assert load_config(yaml.safe_load(config_to_yaml(custom, comments=False))) == custom


def test_json_schema_has_descriptions():
    schema = TrainConfig.model_json_schema()
    assert "description" in json.dumps(schema)
    assert schema["additionalProperties"] is False
