"""docs/configuration.md, generated from the config schema's descriptions.

The schema is the one source of every key, default and description (expmae.config reads it), so
the configuration reference is rendered from it rather than written by hand:

    python -m expmae.docs_config > docs/configuration.md     # print the reference
    python -m expmae.docs_config --write docs/configuration.md
    python -m expmae.docs_config --check docs/configuration.md
      # exit 1 when the file differs from the schema or a key has no description

tests/test_docs_config.py runs the check, so a schema edit without a regenerated page fails the tests.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

DOC = Path("docs") / "configuration.md"
REGENERATE = "python -m expmae.docs_config --write docs/configuration.md"

HEADER = f"""# Configuration reference

<!-- Generated from the config schema by `python -m expmae.docs_config`; do not edit by hand.
     Regenerate with `{REGENERATE}`. -->

Every key of a config file, with its type, default and meaning. The schema is the only source
of defaults: a key left out of your config takes the default shown here. Config files are layered
left to right (`--configfile a.yaml b.yaml`: `b.yaml` wins); a key that is not listed here is an
error that names it. `<name>` stands for a name you choose (a feature extractor instance, a modality).
"""


@dataclass(frozen=True)
class Key:
    path: str  # dotted, e.g. classify.folds or features.<name>.model
    node: Mapping[str, Any]
    depth: int  # 0 = top level


def walk(node: Mapping[str, Any], prefix: str = "", depth: int = 0) -> Iterator[Key]:
    """Every key of an object node, depth first in schema order; an object whose values all share
    one schema (`additionalProperties: {...}` with properties) is walked under `<name>`."""
    for name, child in (node.get("properties") or {}).items():
        path = f"{prefix}{name}"
        yield Key(path, child, depth)
        yield from walk(child, path + ".", depth + 1)
        extra = child.get("additionalProperties")
        if isinstance(extra, dict) and extra.get("properties"):
            yield from walk(extra, path + ".<name>.", depth + 1)


def missing_descriptions(schema: Mapping[str, Any]) -> list[str]:
    return [k.path for k in walk(schema) if not str(k.node.get("description", "")).strip()]


# JSON Schema keywords the config schema uses. Any other key in a key's node is a YAML slip: in a
# flow mapping `{description: a, b}` the comma ends the description and `b` becomes a stray key.
KEYWORDS = frozenset(
    "type description default properties additionalProperties required items enum minimum maximum "
    "exclusiveMinimum exclusiveMaximum pattern minItems maxItems uniqueItems oneOf anyOf propertyNames "
    "minLength maxLength const".split()
)


def stray_keys(schema: Mapping[str, Any]) -> list[str]:
    """`path: key` for every key of a key's node that is not a JSON Schema keyword."""
    return [f"{k.path}: {extra!r}" for k in walk(schema) for extra in k.node if extra not in KEYWORDS]


def _type(node: Mapping[str, Any]) -> str:
    """A short type: `integer >= 1`, `one of: a, b`, `list of string`, alternatives joined by `or`."""
    if "oneOf" in node or "anyOf" in node:
        return " or ".join(_type(n) for n in node.get("oneOf", node.get("anyOf")))
    if "enum" in node:
        return "one of: " + ", ".join(f"`{json.dumps(v)}`" if not isinstance(v, str) else f"`{v}`" for v in node["enum"])
    kind = node.get("type", "any")
    kind = " or ".join(kind) if isinstance(kind, list) else kind
    if kind == "array":
        items = node.get("items")
        return f"list of {_type(items)}" if isinstance(items, dict) else "list"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict) and not node.get("properties"):
        return f"map of name to {_type(node['additionalProperties'])}"
    bounds = [
        f"{op} {node[key]}"
        for key, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"))
        if key in node
    ]
    return kind + (" " + ", ".join(bounds) if bounds else "")


def _text(text: str) -> str:
    """Markdown-safe prose: `<name>` would be read as an HTML tag, `*` as emphasis."""
    return " ".join(str(text).split()).replace("<", "&lt;").replace("*", r"\*")


def _is_section(node: Mapping[str, Any]) -> bool:
    """An object with named keys, or one whose values share one object schema (`features`)."""
    extra = node.get("additionalProperties")
    return bool(node.get("properties")) or (isinstance(extra, dict) and bool(extra.get("properties")))


def _item(name: str, node: Mapping[str, Any]) -> str:
    facts = [_type(node)]
    if "default" in node:
        facts.append(f"default `{json.dumps(node['default'])}`")
    if "pattern" in node:
        facts.append(f"pattern `{node['pattern']}`")
    return f"- **`{name}`** ({'; '.join(facts)}): {_text(node.get('description', ''))}"


def _section(path: str, node: Mapping[str, Any], depth: int) -> list[str]:
    """A heading, the section's description, a bullet per key (a `<name>` map's keys as
    `<name>.key`), then its subsections: so every bullet sits under its own section's heading."""
    lines = [f"{'#' * min(depth + 2, 4)} `{path}`", "", _text(node.get("description", "")), ""]
    props = node.get("properties") or {}
    lines += [_item(name, child) for name, child in props.items() if not _is_section(child)]
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and extra.get("properties"):
        lines += [_item(f"<name>.{name}", child) for name, child in extra["properties"].items()]
    lines.append("")
    for name, child in props.items():
        if _is_section(child):
            lines += _section(f"{path}.{name}", child, depth + 1)
    return lines


def render(schema: Mapping[str, Any]) -> str:
    """The whole page: top-level keys that are not sections first, then one heading per section
    (## section, ### section.sub), in schema order."""
    props = schema.get("properties") or {}
    lines = [HEADER, "## Top-level keys", ""]
    lines += [_item(name, node) for name, node in props.items() if not _is_section(node)] + [""]
    for name, node in props.items():
        if _is_section(node):
            lines += _section(name, node, 0)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m expmae.docs_config", description=__doc__.split("\n")[0])
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--check", metavar="FILE", nargs="?", const=str(DOC), help="exit 1 when FILE is stale")
    group.add_argument("--write", metavar="FILE", nargs="?", const=str(DOC), help="write the reference to FILE")
    args = ap.parse_args(argv)
    from expmae import config

    schema = config.schema()
    missing = missing_descriptions(schema)
    if missing:
        print(f"error: the config schema has keys without a description: {', '.join(missing)}; "
              f"add a `description:` to each in {config.SCHEMA}", file=sys.stderr)
        return 1
    stray = stray_keys(schema)
    if stray:
        print(f"error: the config schema has keys that are not JSON Schema keywords ({'; '.join(stray)}); "
              f"a comma inside an unquoted description in {config.SCHEMA} splits it: quote the description",
              file=sys.stderr)
        return 1
    text = render(schema)
    if args.check:
        path = Path(args.check)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            print(f"error: {path} is not the reference the config schema gives; regenerate it with "
                  f"`python -m expmae.docs_config --write {path}`", file=sys.stderr)
            return 1
        return 0
    if args.write:
        from expmae.io import write_text

        write_text(args.write, text)
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
