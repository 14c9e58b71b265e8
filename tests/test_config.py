"""One home per config fact: config.yaml holds only what differs from the schema, the faces section's
keys and types come from the schema, and the schema is package data that fills every section a
config leaves out, as Snakemake's run and `python -m expmae check` both see it."""
from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import yaml

from expmae import config
from expmae.faces import params as face_params
from fixtures.workflow import ROOT

MARK = "same as schema"  # a config.yaml line restating a default on purpose carries this comment


def leaves(node: yaml.Node, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], int]]:
    """(key path, line) of every key of a composed YAML mapping, nested mappings included."""
    for key, value in node.value:
        yield (*path, key.value), key.start_mark.line
        if isinstance(value, yaml.MappingNode):
            yield from leaves(value, (*path, key.value))


def schema_node(path: tuple[str, ...]) -> dict[str, Any] | None:
    node: dict[str, Any] = config.schema()
    for key in path:
        props = node.get("properties")
        if props is None:  # a free-form mapping (features: instance names): its keys are the user's
            return node
        if key not in props:
            return None
        node = props[key]
    return node


def default_of(path: tuple[str, ...]) -> Any:
    node: Any = config.defaults(path[0]) if len(path) > 1 else config.default(path[0])
    for key in path[1:]:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def config_yaml_problems(text: str) -> list[str]:
    values, lines = yaml.safe_load(text) or {}, text.splitlines()
    out = []
    for path, line in leaves(yaml.compose(text)):
        key = ".".join(path)
        if schema_node(path) is None:
            out.append(f"config.yaml line {line + 1}: {key} is not a key of {config.SCHEMA.name}")
            continue
        value: Any = values
        for k in path:
            value = value[k]
        if not isinstance(value, dict) and value == default_of(path) and MARK not in lines[line]:
            out.append(f"config.yaml line {line + 1}: {key}: {value!r} is the schema's default: remove it "
                       f"(or mark it `# {MARK}`)")
    return out


def test_config_yaml_holds_only_schema_keys_that_differ_from_the_defaults():
    assert not config_yaml_problems((ROOT / "config.yaml").read_text(encoding="utf-8")), \
        config_yaml_problems((ROOT / "config.yaml").read_text(encoding="utf-8"))


def test_the_config_yaml_check_finds_restated_defaults_and_unknown_keys():
    text = "seed: 0\nseeds: 5\ningest:\n  shard_size: 200  # same as schema\n  shard_sizes: 3\nfaces:\n  fps: 4\n"
    assert config_yaml_problems(text) == [
        "config.yaml line 1: seed: 0 is the schema's default: remove it (or mark it `# same as schema`)",
        f"config.yaml line 5: ingest.shard_sizes is not a key of {config.SCHEMA.name}",
        "config.yaml line 7: faces.fps: 4 is the schema's default: remove it (or mark it `# same as schema`)",
    ]


def test_every_section_left_out_gets_its_defaults_and_validates():
    cfg = config.fill_defaults({"data": {"videos": ["v"]}, "mae": {"epochs": 2}})
    assert cfg["faces"] == config.defaults("faces") and cfg["mae"]["epochs"] == 2
    assert cfg["mae"]["init"] is None and cfg["mae"]["lr"] == config.defaults("mae")["lr"]  # null defaults too
    assert cfg["mae_video"]["enabled"] is False  # the section's own default over its keys'
    jsonschema.Draft202012Validator(config.schema()).validate(cfg)


def test_check_outside_a_checkout_reads_the_schema_alone(tmp_path, monkeypatch):
    """No config.yaml in the working directory (an installed wheel): the schema's defaults + the overlays."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.yaml").write_text("data: {videos: [v], labels: l.csv}\nseed: 7\n", encoding="utf-8")
    cfg = config.load(["my.yaml"])
    assert cfg["seed"] == 7 and cfg["classify"] == config.defaults("classify")
    with pytest.raises(FileNotFoundError, match="gone.yaml"):
        config.load(["gone.yaml"])


def test_the_schema_is_package_data():
    assert config.SCHEMA.is_file() and config.SCHEMA.parent == Path(config.__file__).parent
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert config.SCHEMA.name in pyproject["tool"]["setuptools"]["package-data"]["expmae"]  # the wheel: tests/test_wheel.py


@pytest.fixture
def schema_with_a_new_faces_key(monkeypatch):
    """The real schema plus one faces key, as a developer adding a key would write it."""
    sch = copy.deepcopy(config.schema())
    sch["properties"]["faces"]["properties"]["blur_min"] = {"type": "number", "minimum": 0, "default": 0.0,
                                                           "description": "test key"}
    monkeypatch.setattr(config, "schema", lambda: sch)
    if hasattr(face_params, "key_types"):
        face_params.key_types.cache_clear()
        yield
        face_params.key_types.cache_clear()
    else:
        yield


def test_faces_params_take_their_keys_and_types_from_the_schema(schema_with_a_new_faces_key):
    p = face_params.resolve_params({"blur_min": 2, "fps": "3"})
    assert p["blur_min"] == 2.0 and isinstance(p["blur_min"], float) and p["fps"] == 3.0
    assert set(p) == set(config.schema()["properties"]["faces"]["properties"])
