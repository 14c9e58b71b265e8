"""`expmae init`: write a commented my.yaml for a MER preset (its release folder) or for plain folders.

    expmae init --preset mer2023 --root /data/mer2023/dataset-release          # -> my.yaml
    expmae init --videos /data/clips /data/unlabeled --labels /data/labels.csv --test /data/test.csv

The file holds only what differs from config.yaml and the preset; its last lines say how to check and run it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

PRESETS = Path("workflow/presets")
NOT_PRESETS = ("quick", "paper", "demo")  # overlays and the demo's paths, not a release's layout


def mer_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml") if p.stem not in NOT_PRESETS)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="expmae init", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Exit code: 0 written, 1 a folder or file that does not exist, or --out "
                                 "exists (use --force), 2 on a usage error.")
    ap.add_argument("--preset", default="", help=f"a MER release preset of {PRESETS}/ ({', '.join(mer_presets())})")
    ap.add_argument("--root", default="", help="with --preset: the release folder (data.root)")
    ap.add_argument("--videos", nargs="+", default=[], metavar="DIR", help="without --preset: video folders")
    ap.add_argument("--labels", default="", help="without --preset: CSV name,discrete[,valence]")
    ap.add_argument("--transcripts", default="", help="optional CSV name,<transcript column>")
    ap.add_argument("--test", default="", help="optional CSV with a `name` column: the test split")
    ap.add_argument("--quick", action="store_true", help="the next steps name workflow/presets/quick.yaml too")
    ap.add_argument("--out", default="my.yaml", help="file written (default my.yaml)")
    ap.add_argument("--force", action="store_true", help="replace --out when it exists")
    return ap


def _q(path: str) -> str:
    """A path as a YAML scalar (quoted: paths with spaces, colons or a leading `~` stay strings)."""
    return '"' + str(Path(path).expanduser().resolve()).replace('"', '\\"') + '"'


def render(args: argparse.Namespace) -> str:
    overlays = ([f"{PRESETS}/{args.preset}.yaml"] if args.preset else []) + (
        [f"{PRESETS}/quick.yaml"] if args.quick else []) + [args.out]
    cfg = " ".join(overlays)
    if args.preset:
        body = [f"# Your data for {PRESETS}/{args.preset}.yaml: the release folder as distributed. Every other",
                "# data: path of the preset is relative to it.",
                "data:", f"  root: {_q(args.root)}"]
    else:
        body = ["# Your data. Folders are scanned recursively; a file's stem is its video id. Videos in neither",
                "# the label CSV nor the test list are the unlabeled pool (MAE pretraining, pseudo-labels).",
                "data:", "  videos:"] + [f"    - {_q(v)}" for v in args.videos] + [
                f"  labels: {_q(args.labels)}               # name,discrete[,valence]"]
        if args.transcripts:
            body += [f"  transcripts: {_q(args.transcripts)}", "  transcript_column: english   # the CSV's text column"]
        if args.test:
            body += [f"  test: {_q(args.test)}                 # column `name`: the submission's rows"]
    body += ["",
             "# Anything else you change goes here, e.g.:",
             "# classify:",
             "#   folds: 5",
             "# seeds: 3",
             "",
             "# Next:",
             f"#   expmae check --configfile {cfg}",
             f"#   expmae models list --configfile {cfg}    # offline: which models are missing",
             f"#   expmae run --configfile {cfg}"]
    return "\n".join(body) + "\n"


def problems(args: argparse.Namespace) -> list[str]:
    """What makes the file useless, one line each naming the option."""
    out = []
    if args.preset:
        if not (PRESETS / f"{args.preset}.yaml").is_file():
            out.append(f"--preset {args.preset}: no {PRESETS}/{args.preset}.yaml (presets: {', '.join(mer_presets())})")
        if not args.root:
            out.append("--preset needs --root (the release folder, data.root)")
        elif not Path(args.root).expanduser().is_dir():
            out.append(f"--root {args.root}: folder does not exist")
        return out
    for v in args.videos:
        if not Path(v).expanduser().is_dir():
            out.append(f"--videos {v}: folder does not exist")
    for opt in ("labels", "transcripts", "test"):
        f = getattr(args, opt)
        if f and not Path(f).expanduser().is_file():
            out.append(f"--{opt} {f}: file does not exist")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if bool(args.preset) == bool(args.videos or args.labels):
        ap.error("give --preset NAME --root DIR, or --videos DIR... --labels CSV")
    if not args.preset and not (args.videos and args.labels):
        ap.error("plain folders need both --videos and --labels")
    bad = problems(args)
    out = Path(args.out)
    if out.exists() and not args.force:
        bad.append(f"--out {out}: exists; --force replaces it")
    if bad:
        print("\n".join(f"expmae init: {b}" for b in bad), file=sys.stderr)
        return 1
    from expmae.io import write_text

    write_text(out, render(args))
    print(f"wrote {out}\n" + "\n".join(ln[2:] for ln in render(args).splitlines() if ln.startswith("#   ")))
    return 0
