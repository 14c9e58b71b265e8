"""What each round trains, resolved from config at Snakefile parse time (no heavy imports), and the
identity and settings every training job gets.

Modalities (config `fuse.modalities`, e.g. {audio: [egemaps], text: [minilm], visual: [expmae, expmae_video]}):
- the feature sets of one modality are concatenated into one input vector of the fusion heads;
- a name that is not in `classify.feature_sets` is IGNORED (with a note), so switching a feature set
  off is one edit in `classify.feature_sets`; a modality left with no feature set is dropped;
- a feature set in `classify.feature_sets` that no modality lists becomes a modality of its own
  (nothing trained is silently left out of fusion); an empty `fuse.modalities` = one modality per set.
Combinations (config `fuse.combinations`, lists of modality names): each is fused with every head in
`fuse.heads`, besides the combination of all modalities ("all"), which is always there. A combination
naming an unknown modality is an error naming the key; one that shrinks below two active modalities
(or to "all") is dropped.

Identity: every training output's metrics.json records `round, kind (single|fused), combo, head, name`
(given on the command line by the rule); pseudo-labelling and the report read it from there.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Mapping

from expmae import config

ALL = "all"
SINGLE_HEAD = "mlp"  # the per-feature-set classifiers
LATE = "late"        # late fusion: no weights, expmae.train.late
# The fusion heads (config fuse.heads). The schema's enum and expmae.train.heads' registry agree with it (tests).
HEADS = ("fbp", "attention", "concat", LATE)
# Heads with weights, trained by expmae.train.cv (= expmae.train.heads.HEADS, tested).
TRAINED_HEADS = (SINGLE_HEAD, *(h for h in HEADS if h != LATE))
KINDS = ("single", "fused")
# Config keys that say WHAT is trained, not how: not training settings (adding a feature set reruns nothing).
PLAN_KEYS = {"classify": ("feature_sets",), "fuse": ("heads", "modalities", "combinations")}
_noted: set[str] = set()  # print each note once per process (modalities() is called often)


def modalities(cfg: dict) -> dict[str, list[str]]:
    """-> modality name -> feature sets (in classify.feature_sets order)."""
    sets = list(cfg["classify"]["feature_sets"])
    conf = (cfg.get("fuse") or {}).get("modalities") or {}
    out: dict[str, list[str]] = {}
    for mod, names in conf.items():
        kept = [n for n in sets if n in names]
        skipped = [n for n in names if n not in sets]
        note = f"fuse.modalities.{mod}: {skipped}"
        if skipped and note not in _noted:
            _noted.add(note)
            print(f"note: fuse.modalities.{mod}: {skipped} not in classify.feature_sets, ignored", file=sys.stderr)
        if kept:
            out[mod] = kept
    listed = {n for v in out.values() for n in v}
    for n in sets:
        if n not in listed:
            out[n] = [n]
    return out


def combinations(cfg: dict) -> dict[str, list[str]]:
    """-> combination name ('all' or 'audio+text') -> modality names."""
    mods = modalities(cfg)
    conf_mods = set((cfg.get("fuse") or {}).get("modalities") or {}) | set(mods)
    out = {ALL: list(mods)}
    for i, combo in enumerate((cfg.get("fuse") or {}).get("combinations") or []):
        unknown = [m for m in combo if m not in conf_mods]
        if unknown:
            raise ValueError(f"config key fuse.combinations[{i}]: unknown modality {unknown}; known: {sorted(mods)}")
        active = [m for m in mods if m in combo]
        if len(active) >= 2 and len(active) < len(mods):
            out.setdefault("+".join(active), active)
    return out


def heads(cfg: dict) -> list[str]:
    """config fuse.heads (the schema default when unset), checked against HEADS."""
    hs = list((cfg.get("fuse") or {}).get("heads") or config.defaults("fuse")["heads"])
    bad = [h for h in hs if h not in HEADS]
    if bad:
        raise ValueError(f"config key fuse.heads: unknown head {bad}; one of {list(HEADS)}")
    return hs


def fused_name(combo: str, head: str) -> str:
    """Column name of a fused model in the report table: 'fbp' for all modalities, 'fbp[audio+text]'."""
    return head if combo == ALL else f"{head}[{combo}]"


def feature_sets_of(cfg: dict, combo: str) -> list[str]:
    mods = modalities(cfg)
    return [fs for m in combinations(cfg)[combo] for fs in mods[m]]


def modality_arg(cfg: dict, combo: str) -> str:
    """--modality audio=egemaps --modality visual=expmae,expmae_video ... for expmae.train.cv."""
    mods = modalities(cfg)
    return " ".join(f"--modality {m}={','.join(mods[m])}" for m in combinations(cfg)[combo])


def train_params(given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Settings of one training job: the schema defaults of config `classify` and of `fuse`'s training
    keys (modality_dropout, fbp_dim, fbp_factor) < `given` (the rule's --params), + `seed`. A direct
    `python -m expmae.train.cv` thus trains exactly as the workflow's job does; an unknown or invalid
    key is an error naming it."""
    given = dict(given or {})
    seed = given.pop("seed", config.default("seed"))
    seeds = given.pop("seeds", config.default("seeds"))
    if not isinstance(seeds, int) or seeds < 1:
        raise SystemExit(f"config key seeds: {seeds!r}, a whole number >= 1 (training runs once per seed)")
    fuse_keys = set(config.section_schema("fuse")["properties"]) - set(PLAN_KEYS["fuse"])
    out: dict[str, Any] = {}
    for section, part in (("classify", {k: v for k, v in given.items() if k not in fuse_keys}),
                          ("fuse", {k: v for k, v in given.items() if k in fuse_keys})):
        resolved = config.resolve(section, part)
        out.update({k: v for k, v in resolved.items() if k not in PLAN_KEYS[section]})
    return {**out, "seed": seed, "seeds": seeds}


def identity(round_: int, kind: str, head: str, name: str, combo: str | None = None) -> dict[str, Any]:
    """What a training output is: round, kind (single | fused), combo (fused: the modality combination,
    'all' or 'audio+text'; single: None), head, name (the report's column: feature set or fused_name)."""
    if kind not in KINDS:
        raise SystemExit(f"--kind: {kind!r}, one of {list(KINDS)}")
    if kind == "fused" and not combo:
        raise SystemExit("--kind fused needs --combo (the modality combination, e.g. all)")
    return {"round": int(round_), "kind": kind, "combo": combo if kind == "fused" else None, "head": head, "name": name}


def add_identity_args(ap: argparse.ArgumentParser) -> None:
    """--round --kind --combo --name: the identity the rule gives a training job (see identity())."""
    ap.add_argument("--round", type=int, default=0, help="pseudo-label round")
    ap.add_argument("--kind", choices=KINDS, default=None, help="single (one feature set) | fused (default: by head)")
    ap.add_argument("--combo", default=None, help=f"fused: modality combination ({ALL} or e.g. audio+text)")
    ap.add_argument("--name", default=None, help="model name in the report (default: feature set or fused name)")


def identity_of(a: argparse.Namespace, head: str, feature_sets: list[str] = ()) -> dict[str, Any]:
    """Identity from the parsed identity args; defaults for direct calls: kind by head, combo 'all',
    name = the feature set (single) or fused_name(combo, head)."""
    kind = a.kind or ("single" if head == SINGLE_HEAD else "fused")
    combo = (a.combo or ALL) if kind == "fused" else None
    name = a.name or (fused_name(combo, head) if kind == "fused" else "+".join(feature_sets) or head)
    return identity(a.round, kind, head, name, combo)


def is_subcombination(m: Mapping[str, Any]) -> bool:
    """A fused model over a modality sub-combination (analysed, never a candidate for `best`)."""
    return m.get("kind") == "fused" and m.get("combo") != ALL


def parse_pairs(items: list[str]) -> dict[str, list[str]]:
    """['name=a,b', 'name=c'] -> {'name': ['a', 'b', 'c']} (--features / --modality)."""
    out: dict[str, list[str]] = {}
    for it in items:
        name, _, vals = it.partition("=")
        out.setdefault(name, []).extend(p for p in vals.split(",") if p)
    return out
