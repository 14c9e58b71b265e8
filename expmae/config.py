"""The config schema (expmae/config.schema.yaml, package data) as the one source of defaults.

The Snakefile fills every section a config leaves out from here (fill_defaults) and then validates it
against the schema, which fills the remaining keys; a program run directly (`python -m expmae.train.cv
...`, `python -m expmae check`) gets the same defaults from here, so a job and a direct call never
disagree. The schema ships inside the package (importlib.resources), so an installed wheel finds it
as a checkout does. Pure Python (PyYAML + jsonschema): it runs at every Snakemake parse.

    from expmae.config import defaults, resolve
    p = resolve("classify", json.loads(args.params))   # schema defaults < given params, validated
"""
from __future__ import annotations

import copy
import functools
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

# The one copy: package data (pyproject.toml), read where the package is installed; the Snakefile validates against it.
SCHEMA = Path(str(resources.files("expmae").joinpath("config.schema.yaml")))


@functools.cache
def schema() -> dict[str, Any]:
    import yaml

    if not SCHEMA.is_file():
        raise FileNotFoundError(f"config schema not found at {SCHEMA}: the expmae install lacks its package data "
                                "(reinstall it: pip install .)")
    return yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))


def section_schema(section: str) -> dict[str, Any]:
    props = schema()["properties"]
    if section not in props:
        raise KeyError(f"no config section {section!r} in {SCHEMA.name}; sections: {sorted(props)}")
    return props[section]


def _defaults_of(node: Mapping[str, Any]) -> Any:
    """Default of a schema node. Objects: their properties' defaults, overlaid by the object's own
    `default` (as Snakemake's validate fills them: `mae_video: {default: {enabled: false}}` still
    gets every other key's default)."""
    own = copy.deepcopy(node["default"]) if "default" in node else None
    if node.get("type") == "object" and "properties" in node and (own is None or isinstance(own, dict)):
        out = {k: _defaults_of(v) for k, v in node["properties"].items()}
        return {**{k: v for k, v in out.items() if v is not None}, **(own or {})}
    return own


def default(key: str) -> Any:
    """The schema default of one top-level key (`seed`, `device`, ...) or section."""
    return _defaults_of(section_schema(key))


def defaults(section: str) -> dict[str, Any]:
    """The schema defaults of one config section (`classify`, `faces`, ...), as a fresh dict."""
    return _defaults_of(section_schema(section)) or {}


def resolve(section: str, params: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None,
            ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """defaults(section) < params, checked against the section's schema; an error names the key
    (`config key classify.folds: ...`). `extra`: keys a job adds that are not config keys of the
    section (e.g. seed, device), merged after validation; `ignore`: keys skipped by validation."""
    out = {**defaults(section), **dict(params or {})}
    check(section, {k: v for k, v in out.items() if k not in ignore and k not in (extra or {})})
    return {**out, **dict(extra or {})}


def check(section: str, params: Mapping[str, Any]) -> None:
    """Validate `params` against the section's schema -> ValueError naming `section.key`."""
    import jsonschema

    node = section_schema(section)
    errors = sorted(jsonschema.Draft202012Validator(node).iter_errors(dict(params)), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        key = ".".join([section, *map(str, e.path)])
        raise ValueError(f"config key {key}: {e.message}")


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` laid on `base`, nested dicts merged key by key (as Snakemake overlays --configfile files)."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
    return out


DATA_PATHS = ("labels", "transcripts", "test", "test_labels", "manifest", "groups")  # the data: keys that are file paths (+ videos)


def data_paths(data: Mapping[str, Any]) -> dict[str, Any]:
    """data: with its relative paths taken from data.root (a preset names the release's files relative to
    the one folder the user sets). Without a root, paths stay as given (relative to the working directory)."""
    out = dict(data)
    root = str(out.get("root") or "")
    if not root:
        return out
    base = Path(root).expanduser()
    join = lambda p: str(base / p) if p and not Path(p).expanduser().is_absolute() else p  # noqa: E731
    out["videos"] = [join(v) for v in out.get("videos") or []]
    out["predict"] = [join(v) for v in out.get("predict") or []]
    for k in DATA_PATHS:
        if k in out:
            out[k] = join(out[k])
    return out


def fill_defaults(value: dict[str, Any], node: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Schema defaults into every missing key of `value`, level by level, in place (a key the config gives
    keeps its value whole, a missing one gets its default: a section with all its keys' defaults, `null`
    where the schema says so). Snakemake's validate fills only the keys of sections the config has, so
    the Snakefile calls this first: config.yaml need only hold what differs from the schema."""
    node = schema() if node is None else node
    if not isinstance(value, dict):
        return value
    for k, sub in (node.get("properties") or {}).items():
        if k not in value:
            if "default" not in sub and not (sub.get("type") == "object" and "properties" in sub):
                continue  # no default: stays missing (validation names it when required)
            value[k] = _defaults_of(sub)
        fill_defaults(value[k], sub)  # a new section too: its keys whose default is null
    return value


def load(configfiles: list[str | Path] = (), base: str | Path | None = "config.yaml") -> dict[str, Any]:
    """The config a Snakemake run would see, for programs run outside it (`python -m expmae check`):
    `base` (the Snakefile's configfile; skipped when absent, as outside a checkout: it holds only
    differences from the schema) < each of `configfiles` (each must exist) < the schema's defaults under
    every missing key, validated (an error names the key)."""
    import jsonschema
    import yaml

    cfg: dict[str, Any] = {}
    bases = [base] if base and Path(base).exists() else []
    for f in bases + list(configfiles):
        p = Path(f)
        if not p.exists():
            raise FileNotFoundError(f"config file {p} not found (--configfile)")
        cfg = merge(cfg, yaml.safe_load(p.read_text(encoding="utf-8")) or {})
    fill_defaults(cfg)
    cfg["data"] = data_paths(cfg.get("data") or {})
    errors = sorted(jsonschema.Draft202012Validator(schema()).iter_errors(cfg), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        raise ValueError(f"config key {'.'.join(map(str, e.path)) or '<top>'}: {e.message}")
    return cfg
