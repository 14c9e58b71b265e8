"""Which classifiers each round trains, resolved from config at Snakefile parse time (no heavy imports).

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
"""
from __future__ import annotations

import sys

ALL = "all"
HEADS = ("fbp", "attention", "concat", "late")
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
    hs = list((cfg.get("fuse") or {}).get("heads") or ["fbp", "concat"])
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
    """--modality audio=egemaps --modality visual=expmae,expmae_video ... for expmae.classify."""
    mods = modalities(cfg)
    return " ".join(f"--modality {m}={','.join(mods[m])}" for m in combinations(cfg)[combo])
