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
import json
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Mapping

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
    """Validate `params` against the section's schema -> ConfigError naming `section.key` (one line per problem)."""
    found = problems(dict(params), section_schema(section), (section,))
    if found:
        raise ConfigError("\n".join(found))


class ConfigError(ValueError):
    """A config that does not validate; its message is one line per problem, each naming its key."""


_TYPES = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
          "array": "a list", "object": "a mapping (key: value)", "null": "null"}


def expected(node: Mapping[str, Any]) -> str:
    """What a schema node accepts, in words: `an integer`, `an integer or null`, `a list of integers`."""
    if "enum" in node:
        return "one of " + ", ".join(json.dumps(v) for v in node["enum"])
    if "oneOf" in node or "anyOf" in node:
        return " or ".join(expected(sub) for sub in node.get("oneOf") or node["anyOf"])
    kinds = node.get("type", [])
    words = [_TYPES.get(k, k) for k in ([kinds] if isinstance(kinds, str) else kinds)]
    if kinds == "array" and isinstance(node.get("items"), Mapping) and "type" in node["items"]:
        words = [f"a list of {expected(node['items']).removeprefix('an ').removeprefix('a ')}s"]
    return " or ".join(words) or "a valid value"


def _unknown(keys: list[str], known: list[str], at: str) -> Iterator[str]:
    """One line per unknown key: its closest known key (difflib), else the keys of that section."""
    import difflib

    for k in keys:
        key = f"{at}.{k}" if at else k
        near = difflib.get_close_matches(k, known, n=1, cutoff=0.6)
        if near:
            yield f"config key {key} is not known; did you mean {at + '.' if at else ''}{near[0]}?"
        else:
            yield f"config key {key} is not known; the keys of {at or 'a config'}: {', '.join(known)}"


def problems(value: Any, node: Mapping[str, Any], at: tuple[str, ...] = ()) -> list[str]:
    """Every schema violation of `value` (the config, or a section at `at`), one line each, in key order."""
    import jsonschema

    out: list[str] = []
    errors = jsonschema.Draft202012Validator(node).iter_errors(value)
    for e in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        path = [*at, *map(str, e.absolute_path)]
        key = ".".join(path)
        if e.validator == "additionalProperties" and isinstance(e.instance, dict):
            known = list(e.schema.get("properties") or {})
            out += _unknown([k for k in e.instance if k not in known], known, key)
        elif e.validator == "required":
            out.append(f"config key {key or '<top>'}: needs {e.message.split(' is a required')[0]}")
        elif e.validator == "propertyNames":
            out.append(f"config key {key}.{e.instance}: names are letters, digits, _ or -, starting with a letter")
        elif e.validator in ("type", "enum", "oneOf", "anyOf"):
            out.append(f"config key {key} = {json.dumps(e.instance, default=str)}: expected {expected(e.schema)}")
        else:  # minimum, pattern, minItems...: jsonschema's words after the value
            out.append(f"config key {key} = {json.dumps(e.instance, default=str)}: "
                       f"{e.message.removeprefix(repr(e.instance)).strip()}")
    return list(dict.fromkeys(out))


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` laid on `base`, nested dicts merged key by key (as Snakemake overlays --configfile files)."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
    return out


DATA_PATHS = ("labels", "transcripts", "test", "test_labels", "manifest", "groups")  # the data: keys that are file paths (+ videos)


def _under(root: str):
    """path -> path taken from root when relative (empty and absolute paths as given)."""
    base = Path(root).expanduser()
    return lambda p: str(base / p) if p and not Path(p).expanduser().is_absolute() else p


def data_paths(data: Mapping[str, Any]) -> dict[str, Any]:
    """data: with its relative paths taken from data.root (a preset names the release's files relative to
    the one folder the user sets). Without a root, paths stay as given (relative to the working directory)."""
    out = dict(data)
    root = str(out.get("root") or "")
    if not root:
        return out
    join = _under(root)
    out["videos"] = [join(v) for v in out.get("videos") or []]
    out["predict"] = [join(v) for v in out.get("predict") or []]
    for k in DATA_PATHS:
        if k in out:
            out[k] = join(out[k])
    if isinstance(out.get("tracks"), Mapping):  # data.tracks.<track>.labels: a release file like the others
        out["tracks"] = {n: {**t, "labels": join(t.get("labels"))} if isinstance(t, Mapping) else t
                         for n, t in out["tracks"].items()}
    return out


def resolve_paths(cfg: dict[str, Any]) -> dict[str, Any]:
    """The config's release paths taken from data.root, in place: the data: files (data_paths), faces.folder
    (OpenFace face folders) and the path of every feature set read from a folder (vectors computed
    elsewhere): all parts of a release, so a preset names them relative to the one folder the user sets.
    Absolute paths and a config without data.root stay as given (relative to the working directory)."""
    cfg["data"] = data_paths(cfg.get("data") or {})
    root = str(cfg["data"].get("root") or "")
    if not root:
        return cfg
    join = _under(root)
    if isinstance(cfg.get("faces"), Mapping) and cfg["faces"].get("folder"):
        cfg["faces"] = {**cfg["faces"], "folder": join(str(cfg["faces"]["folder"]))}
    if isinstance(cfg.get("features"), Mapping):
        cfg["features"] = {n: {**f, "path": join(str(f["path"]))} if isinstance(f, Mapping) and f.get("path") else f
                           for n, f in cfg["features"].items()}
    return cfg


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
    import yaml

    cfg: dict[str, Any] = {}
    bases = [base] if base and Path(base).exists() else []
    for f in bases + list(configfiles):
        p = Path(f)
        if not p.is_file():
            raise FileNotFoundError(f"config file {p} not found (--configfile)")
        try:
            layer = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark else ""
            raise ConfigError(f"config file {p}: not valid YAML{where}: {getattr(err, 'problem', '') or err}") from None
        if not isinstance(layer, dict):
            raise ConfigError(f"config file {p}: holds a {type(layer).__name__}, not a mapping of config keys "
                              "(e.g. `classify: {folds: 5}`)")
        cfg = merge(cfg, layer)
    fill_defaults(cfg)
    validate(cfg)
    return resolve_paths(cfg)


def config_problems(cfg: dict[str, Any]) -> list[str]:
    """The one validation of a whole config against the schema, at Snakemake's parse (the Snakefile) and
    in `expmae check` (load -> validate): every problem on a line of its own, naming the key, the value and
    what is expected (unknown keys with "did you mean"), never the schema itself. The feature set and
    extractor names are checked beside it (expmae.features.registry.name_problems)."""
    return problems(cfg, schema())


def validate(cfg: dict[str, Any]) -> None:
    """config_problems -> ConfigError (one line per problem)."""
    if found := config_problems(cfg):
        raise ConfigError("\n".join(found))
