"""The documentation: docs/ builds with `mkdocs build --strict` (mkdocs.yml turns every broken link,
anchor and nav entry into an error), README.md's relative links resolve on GitHub, and README's
Layout names every rule file, every top-level module of the package and where the schema is."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from expmae import config

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


def _prose(text: str) -> str:
    """Markdown without fenced code blocks and inline code spans (their brackets are not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def github_anchor(heading: str) -> str:
    """GitHub's heading id: lower case, punctuation dropped (code marks too), spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    lines = _prose_keep_headings(path.read_text(encoding="utf-8"))
    return {github_anchor(m.group(1)) for ln in lines if (m := HEADING.match(ln))}


def _prose_keep_headings(text: str) -> list[str]:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M).splitlines()


def broken_links(markdown: Path) -> list[str]:
    """Relative links of a Markdown file whose file (or, into a Markdown file, heading) is missing."""
    broken = []
    for target in LINK.findall(_prose(markdown.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (markdown.parent / path).resolve() if path else markdown
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with this anchor")
    return broken


def test_readme_links_resolve():
    assert broken_links(README) == []


def test_docs_links_resolve_on_github_too():
    # mkdocs checks its own anchors; GitHub makes heading ids its own way, and the pages are read there too
    assert [f"{page.name}: {b}" for page in sorted((ROOT / "docs").glob("*.md")) for b in broken_links(page)] == []


def test_a_broken_link_is_found(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Title\n\n## A million videos: `data.manifest` and more\n")
    md = tmp_path / "README.md"
    md.write_text("[ok](docs/a.md#a-million-videos-datamanifest-and-more) [gone](docs/b.md) "
                  "[anchor](docs/a.md#nothing) [web](https://example.org) `[code](x.md)`\n"
                  "```\n[fenced](y.md)\n```\n")
    assert broken_links(md) == ["docs/b.md: no such file", "docs/a.md#nothing: no heading with this anchor"]


def test_readme_is_short_and_its_layout_is_complete():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 220, "README.md is the 5-minute entry point: move detail into docs/"
    layout = text.split("## Layout", 1)[1]
    for rule in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        assert rule.name in layout, f"README Layout lacks workflow/rules/{rule.name}"
    for entry in sorted((ROOT / "expmae").iterdir()):
        if entry.name.startswith(("_", ".")) or not (entry.suffix == ".py" or (entry / "__init__.py").exists()):
            continue
        name = entry.name + "/" if entry.is_dir() else entry.name
        assert name in layout, f"README Layout lacks expmae/{name}"
    schema = config.SCHEMA.resolve().relative_to(ROOT).as_posix()
    assert schema in layout, f"README Layout: the config schema is at {schema}"


@pytest.mark.e2e
def test_docs_build_strict(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for page in ("index", "configuration", "evaluation", "architecture"):
        assert (tmp_path / "site" / page / "index.html").is_file() or (tmp_path / "site" / f"{page}.html").is_file()
