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


def _load(tmp_path, text: str) -> str:
    """config.load of one overlay (outside a checkout: the schema's defaults beneath) -> its error message."""
    (tmp_path / "my.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(config.ConfigError) as err:
        config.load([tmp_path / "my.yaml"], base=None)
    return str(err.value)


def test_unknown_keys_name_the_closest_key_one_line_each(tmp_path):
    assert _load(tmp_path, "classify:\n  fold: 3\n") == "config key classify.fold is not known; did you mean classify.folds?"
    assert _load(tmp_path, "clasify: {folds: 3}\nfaces: {fsp: 2, zzz: 1}\n").splitlines() == [
        "config key clasify is not known; did you mean classify?",
        "config key faces.fsp is not known; did you mean faces.fps?",
        "config key faces.zzz is not known; the keys of faces: " + ", ".join(config.schema()["properties"]["faces"]
                                                                            ["properties"]),
    ]
    assert _load(tmp_path, "features:\n  w2v: {extractor: wav2vec2, layr: 3}\n") == \
        "config key features.w2v.layr is not known; did you mean features.w2v.layer?"


def test_wrong_types_name_key_value_and_expected_type(tmp_path):
    assert _load(tmp_path, "classify:\n  folds: five\n") == 'config key classify.folds = "five": expected an integer'
    assert _load(tmp_path, "classify: {folds: 1}\nclasses: happy\n").splitlines() == [
        'config key classes = "happy": expected a list of strings',
        "config key classify.folds = 1: is less than the minimum of 2",
    ]
    assert _load(tmp_path, "features:\n  w: {extractor: hubert, layer: last}\n") == \
        'config key features.w.layer = "last": expected an integer or a list of integers'


def test_a_config_file_that_is_no_yaml_mapping_is_named(tmp_path):
    assert _load(tmp_path, "classify: [folds: 3\n").startswith(f"config file {tmp_path / 'my.yaml'}: not valid YAML (line")
    assert _load(tmp_path, "- 3\n") == (f"config file {tmp_path / 'my.yaml'}: holds a list, not a mapping of config "
                                        "keys (e.g. `classify: {folds: 5}`)")


@pytest.mark.e2e
@pytest.mark.parametrize("overlay, message", [
    ("classify:\n  fold: 3\n", "config key classify.fold is not known; did you mean classify.folds?"),
    ("classify:\n  folds: five\n", 'config key classify.folds = "five": expected an integer'),
    ("features:\n  egemaps: {extractor: egemap}\nclassify: {feature_sets: [egemaps, minlm]}\n",
     "config key features.egemaps.extractor: unknown extractor 'egemap'; did you mean egemaps? (expmae features list)\n"
     "config key classify.feature_sets: 'minlm' is not a `features:` entry; did you mean minilm?"),
    ("data: {root: /x}\n", "config key data.root: /x does not exist: set it to the folder that holds the data "
                           "(the preset names its folders and files relative to it)"),
])
def test_snakemake_names_a_config_error_in_its_own_lines_never_the_schema(tmp_path, overlay, message):
    """What `snakemake -n` prints for a config problem: the WorkflowError's lines, no schema dump (Snakemake's
    own validate printed the whole schema, 89 lines)."""
    from fixtures.workflow import copy_workflow, smk

    wd = copy_workflow(tmp_path / "wf")
    (wd / "my.yaml").write_text(overlay, encoding="utf-8")
    p = smk(wd, "-n", "--configfile", "config_tiny.yaml", "my.yaml", check=False)
    out = [ln for ln in (p.stdout + p.stderr).splitlines() if not ln.startswith("Config file config.yaml is extended")]
    assert p.returncode == 1 and out[0].startswith("WorkflowError in file") and out[-1].lstrip().startswith("File ")
    assert "\n".join(out[1:-1]) == message, p.stdout + p.stderr


def test_release_folders_are_taken_from_data_root(tmp_path):
    """faces.folder and a folder feature set's path are parts of a release like the data: files: relative ones
    are taken from data.root; absolute ones, and any without a root, stay as given."""
    root = tmp_path / "release"
    cfg = tmp_path / "my.yaml"
    cfg.write_text(yaml.safe_dump({
        "data": {"root": str(root), "videos": ["train"], "labels": "train-label.csv"},
        "faces": {"source": "folder", "folder": "openface_face"},
        "features": {"hubert": {"extractor": "folder", "path": "features/hubert_UTT"},
                     "mine": {"extractor": "folder", "path": "/abs/mine"}, "egemaps": {"extractor": "egemaps"}}}))
    c = config.load([cfg])
    assert c["faces"]["folder"] == str(root / "openface_face")
    assert c["features"]["hubert"]["path"] == str(root / "features" / "hubert_UTT")
    assert c["features"]["mine"]["path"] == "/abs/mine" and "path" not in c["features"]["egemaps"]
    assert c["data"]["videos"] == [str(root / "train")]
    cfg.write_text(yaml.safe_dump({"faces": {"folder": "openface_face"},
                                   "features": {"hubert": {"extractor": "folder", "path": "rel"}}}))
    c = config.load([cfg])
    assert c["faces"]["folder"] == "openface_face" and c["features"]["hubert"]["path"] == "rel"
