"""docs/configuration.md is generated from the config schema (expmae/docs_config.py): it must match
the schema, and every schema key needs a description for it to say anything."""
import subprocess
import sys
from pathlib import Path

import yaml

from expmae import config
from expmae.docs_config import missing_descriptions, render, stray_keys

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "configuration.md"


def _check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "expmae.docs_config", "--check", str(path)],
                          cwd=ROOT, capture_output=True, text=True)


def test_configuration_md_matches_the_schema():
    result = _check(DOC)
    assert result.returncode == 0, result.stderr


def test_every_schema_key_has_a_description_and_no_stray_key():
    schema = config.schema()
    assert missing_descriptions(schema) == []
    assert stray_keys(schema) == []


def test_every_schema_key_is_in_the_reference():
    text = DOC.read_text(encoding="utf-8")
    for section, node in config.schema()["properties"].items():
        assert f"`{section}`" in text
        for key in node.get("properties") or {}:
            # a key that is itself a section (data.tracks: a map of objects) has its own heading
            assert f"**`{key}`**" in text or f"### `{section}.{key}`" in text, f"{section}.{key}"
    assert "**`<name>.extractor`**" in text  # keys of each features: instance


def test_a_stale_reference_fails_the_check_with_the_command_to_fix_it(tmp_path):
    stale = tmp_path / "configuration.md"
    stale.write_text(DOC.read_text(encoding="utf-8").replace("videos per shard", "videos in a shard"), encoding="utf-8")
    result = _check(stale)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"error: {stale} is not the reference the config schema gives; regenerate it "
                                     f"with `python -m expmae.docs_config --write {stale}`")
    assert _check(tmp_path / "absent.md").returncode == 1


def test_keys_without_a_description_are_named():
    schema = yaml.safe_load("""
properties:
  seed: {type: integer, default: 0, description: a seed}
  ingest:
    type: object
    properties:
      shard_size: {type: integer, default: 200}
  features:
    type: object
    description: instances
    additionalProperties:
      type: object
      properties:
        model: {type: string}
""")
    assert missing_descriptions(schema) == ["ingest", "ingest.shard_size", "features.<name>.model"]


def test_a_comma_in_an_unquoted_flow_description_is_a_stray_key():
    # The slip the check exists for: YAML ends the plain scalar at the comma.
    schema = yaml.safe_load("properties:\n  seed: {type: integer, description: seed of (folds, training)}\n")
    assert stray_keys(schema) == ["seed: 'training)'"]


def test_markup_in_descriptions_is_escaped():
    schema = {"properties": {"features": {"type": "object", "description": "<name>: {extractor: ...}",
                                          "properties": {"glob": {"type": "string", "default": "*.csv",
                                                                  "description": "files like results/*.csv"}}}}}
    text = render(schema)
    assert "&lt;name>: {extractor: ...}" in text
    assert r"- **`glob`** (string; default `" + '"*.csv"' + r"`): files like results/\*.csv" in text


def test_a_key_after_a_subsection_stays_under_its_own_section():
    schema = yaml.safe_load("""
properties:
  mae:
    type: object
    description: image MAE
    properties:
      size: {type: string, default: micro, description: model size}
      schedule:
        type: object
        description: learning-rate schedule
        properties:
          warmup: {type: integer, default: 40, description: warmup epochs}
      epochs: {type: integer, default: 8, description: pretraining epochs}
""")
    text = render(schema)
    assert text.index("**`epochs`**") < text.index("### `mae.schedule`") < text.index("**`warmup`**")
