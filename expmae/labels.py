"""The user's CSVs (labels, test list, transcripts): decoding and the QC rows of what was odd in them.

Decoding (expmae.io.decode) tries UTF-8, UTF-8 with a BOM, the configured `data.encoding`, then GB18030
(a superset of GBK/GB2312, common for Chinese MER data); only when none decodes every byte are bad bytes replaced,
and that is a QC row (stage `inputs`), never silent garbage. Problems are rows, never a stopped run.

Every QC row is {"name", "stage", "reason"}; the reasons are the vocabulary in docs/troubleshooting.md
("Read the QC table first"). File names appear as base names, never absolute paths (the table is shared).
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import pandas as pd

from expmae.io import ENCODINGS, decode, write_text  # noqa: F401 — decode: part of this module's API


def read_csv(path: str | os.PathLike, encoding: str = "", key: str = "") -> tuple[pd.DataFrame, list[dict]]:
    """A user CSV as strings (empty cells ""), decoded as above -> (table, QC rows). A blank file is a
    table without columns. The table's attrs["encoding"] says which encoding decoded it."""
    p = Path(path)
    text, used, exact = decode(p.read_bytes(), encoding)
    issues = []
    where = f"{p.name} ({'config key ' + key if key else 'input CSV'})"
    if not exact:
        issues.append(qc(p.name, f"bytes replaced: {where} is not {'/'.join(ENCODINGS)}"
                                 f"{'/' + encoding if encoding else ''}; set data.encoding"))
    if not text.strip():
        df = pd.DataFrame()
        df.attrs["encoding"] = used
        return df, issues
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, ValueError) as err:
        return pd.DataFrame(), issues + [qc(p.name, f"unparsable CSV: {where}: {str(err).splitlines()[0][:120]}")]
    df.columns = [str(c).strip() for c in df.columns]
    df.attrs["encoding"] = used
    return df, issues


def qc(name: str, reason: str, stage: str = "inputs") -> dict:
    return {"name": name, "stage": stage, "reason": reason}


def read_labels(path: str | os.PathLike | None, classes: list[str], encoding: str = "",
                key: str = "data.labels") -> tuple[pd.DataFrame, list[dict]]:
    """-> DataFrame(name, y int, valence float|nan[, group str]), QC rows (stage labels). `group` is there only
    when the CSV has a group column ("" where a row has none): videos of one group share a cross-validation
    fold (expmae.train.folds)."""
    if not path or not Path(path).exists():
        return pd.DataFrame(columns=["name", "y", "valence"]), []
    df, issues = read_csv(path, encoding, key)
    if not len(df.columns):
        return pd.DataFrame(columns=["name", "y", "valence"]), issues + [qc(Path(path).name, f"empty CSV: label CSV ({key})")]
    if "name" not in df.columns or "discrete" not in df.columns:
        raise SystemExit(f"{path}: label CSV needs columns name,discrete[,valence] (config key {key})")
    idx = {c: i for i, c in enumerate(classes)}
    cols = ["name", "y", "valence"] + (["group"] if "group" in df.columns else [])
    rows: dict[str, tuple] = {}
    first: dict[str, tuple[str, str]] = {}
    for r in df.to_dict("records"):
        name, lab, raw_val = r["name"].strip(), str(r["discrete"]).strip(), str(r.get("valence", "")).strip()
        if not name:
            issues.append(qc("", f"label row without a name: ({key})", "labels"))
            continue
        if name in first:
            same = first[name] == (lab.lower(), raw_val)
            issues.append(qc(name, "duplicate label row: same label (kept first)" if same else
                             f"conflicting label rows: kept {first[name][0]!r} valence {first[name][1]!r}, "
                             f"ignored {lab!r} valence {raw_val!r}", "labels"))
            continue
        first[name] = (lab.lower(), raw_val)
        if lab.lower() not in idx:
            issues.append(qc(name, f"unknown label: {lab!r} (treated as unlabeled)", "labels"))
            continue
        try:
            val = float(raw_val) if raw_val else float("nan")
        except ValueError:
            val = float("nan")
            issues.append(qc(name, f"non-numeric valence: {raw_val[:40]!r} (treated as unknown)", "labels"))
        rows[name] = (name, idx[lab.lower()], val) + ((str(r["group"]).strip(),) if len(cols) > 3 else ())
    return pd.DataFrame(list(rows.values()), columns=cols), issues


def test_lists(test) -> list:
    """The test lists of a run as a list: data.test (one path or none) and the data.tracks label CSVs come
    as one path or several; empty entries stay (callers skip them)."""
    return list(test) if isinstance(test, (list, tuple)) else [test]


def read_names(path: str | os.PathLike | None, encoding: str = "", key: str = "data.test") -> tuple[list[str], list[dict]]:
    """Names of a name list (the test split) in file order, each once -> (names, QC rows)."""
    if not path or not Path(path).exists():
        return [], []
    df, issues = read_csv(path, encoding, key)
    if "name" not in df.columns:
        return [], issues + [qc(Path(path).name, f"no name column: {Path(path).name} ({key}), no test split")]
    names = [n.strip() for n in df["name"] if n.strip()]
    return list(dict.fromkeys(names)), issues


def transcript_table(path: str | os.PathLike | None, column: str = "english",
                     encoding: str = "") -> tuple[dict[str, str], list[dict]]:
    """name -> transcript, and the QC rows (stage inputs) of what was odd in the CSV."""
    if not path:
        return {}, []
    p = Path(path)
    if not p.exists():
        return {}, [qc(p.name, "file not found: transcript CSV (config key data.transcripts)")]
    df, issues = read_csv(p, encoding, "data.transcripts")
    if not len(df.columns):
        return {}, issues + [qc(p.name, "empty CSV: transcript CSV (config key data.transcripts)")]
    if "name" not in df.columns:
        raise SystemExit(f"{p}: needs a 'name' column (config key data.transcripts)")
    if column not in df.columns:
        others = [c for c in df.columns if c != "name"]
        if not others:
            raise SystemExit(f"{p}: no transcript column (config key data.transcript_column={column!r})")
        issues.append(qc(p.name, f"transcript column missing: {column!r}, using {others[0]!r} (config key data.transcript_column)"))
        column = others[0]
    out: dict[str, str] = {}
    for name, t in zip(df["name"].tolist(), df[column].tolist()):  # lists: iterating arrow arrays is ~10x slower
        name = name.strip()
        if name in out:
            issues.append(qc(name, "duplicate transcript row: kept first", "text"))
            continue
        out[name] = " ".join(str(t).split())
    return out, issues


def test_coverage(test_names: list[str], registered: set[str]) -> list[dict]:
    """A QC row per test name without a video (the submission still gets a flagged row for it)."""
    return [qc(n, "test name without a video: flagged row in the submission", "test") for n in test_names
            if n not in registered]


def content_groups(manifest: pd.DataFrame) -> list[list[str]]:
    """Names whose files have identical bytes (the ingest manifests' sha256; empty files and unhashed rows
    left out), groups of two or more, each sorted."""
    if "sha256" not in manifest:
        return []
    m = manifest[(manifest["sha256"].astype(str) != "") & (manifest["size"] > 0)]
    return [sorted(g["name"].astype(str)) for _, g in m.groupby("sha256", sort=False) if len(g) > 1]


def duplicate_content(manifest: pd.DataFrame, split: dict[str, str]) -> list[dict]:
    """QC rows for videos with identical bytes (sha256 of the ingest manifest): a symlink or byte copy
    registered under a second name. A group spanning the test split and a training split is leakage."""
    rows = []
    for names in content_groups(manifest):
        splits = {split.get(n, "unlabeled") for n in names}
        leak = "test" in splits and len(splits) > 1
        for n in names[1:]:
            why = f"duplicate content: same bytes as {names[0]} (split {split.get(n, 'unlabeled')} vs " \
                  f"{split.get(names[0], 'unlabeled')}{', train/test leakage' if leak else ''})"
            rows.append(qc(n, why, "ingest"))
    return rows


def ingest_rows(issues_tsv: str | os.PathLike | None) -> list[dict]:
    """results/ingest/issues.tsv as QC rows: the video's name (a folder's base name), never its path."""
    if not issues_tsv or not Path(issues_tsv).exists():
        return []
    q = pd.read_csv(issues_tsv, sep="\t", dtype=str, keep_default_na=False)
    return [qc(r["name"] or Path(r["path"]).name, r["reason"], "ingest") for r in q.to_dict("records")]


def check(manifests: list[str], classes: list[str], labels: str = "", transcripts: str = "", test: str = "",
          test_labels: str = "", column: str = "english", encoding: str = "",
          ingest_issues: str = "", tracks: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """Every problem of the inputs, one QC row each: ingest issues, the CSVs (decoding, duplicates,
    values), test names without a video, identical content under two names. tracks: the data.tracks label
    CSVs (expmae.tracks), whose names are test videos too."""
    man = pd.concat([pd.read_parquet(p) for p in manifests], ignore_index=True) if manifests else \
        pd.DataFrame(columns=["name", "path", "size", "sha256"])
    if "sha256" not in man:
        man["sha256"] = ""
    lab, rows = read_labels(labels, classes, encoding)
    names, more = read_names(test, encoding)
    rows += more + test_coverage(names, set(man["name"]))
    rows += read_labels(test_labels, classes, encoding, "data.test_labels")[1]
    for t in (t for t in tracks if str(t) not in (str(test), str(test_labels))):  # test3 is data.test's own file
        more, seen = read_labels(t, classes, encoding, "data.tracks")[1], set(names)
        extra = [n for n in read_names(t, encoding, "data.tracks")[0] if n not in seen]
        rows += more + test_coverage(extra, set(man["name"]))
        names += extra
    rows += transcript_table(transcripts, column, encoding)[1]
    split = {n: "labeled" for n in lab["name"]} | {n: "test" for n in names}
    rows = ingest_rows(ingest_issues) + rows + duplicate_content(man, split)
    return pd.DataFrame(rows, columns=["name", "stage", "reason"]).drop_duplicates(ignore_index=True)


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="QC rows of the inputs (CSVs, ingest issues, duplicate content).")
    ap.add_argument("--manifests", nargs="*", default=[])
    ap.add_argument("--classes", required=True)
    for flag in ("labels", "transcripts", "test", "test-labels", "column", "encoding", "ingest-issues"):
        ap.add_argument(f"--{flag}", default="english" if flag == "column" else "")
    ap.add_argument("--tracks", action="append", default=[], help="a data.tracks label CSV (repeatable)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    t = check(a.manifests, a.classes.split(","), a.labels, a.transcripts, a.test, a.test_labels, a.column,
              a.encoding, a.ingest_issues, a.tracks)
    write_text(a.out, t.to_csv(sep="\t", index=False))
    for stage, n in t["stage"].value_counts().items():
        print(f"[inputs] {n} QC rows at stage {stage}")


if __name__ == "__main__":
    main()
