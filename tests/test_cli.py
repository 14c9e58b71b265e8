"""The `expmae` command (expmae/cli/): --help and exit codes of every subcommand, `init`, the console that
reads Snakemake's output (one line per job, notes once, the failure summary), `report` over a run that lacks
an optional report file, the slurm profile without SLURM, the default profile without Snakemake's
RuntimeWarning, and `make help`."""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from expmae.cli import COMMANDS
from expmae.cli.progress import Console, benchmark_means, meaningful_tail
from fixtures.workflow import SNAKEMAKE, copy_workflow, placeholder_workflow

ROOT = Path(__file__).resolve().parents[1]
EXPMAE = Path(sys.executable).parent / "expmae"  # the [project.scripts] entry point


def expmae(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(EXPMAE), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_subcommand_has_help(name):
    p = expmae(name, "--help")
    assert p.returncode == 0, p.stderr
    assert "usage:" in p.stdout and p.stderr == ""


def test_top_level_help_lists_commands_and_exit_codes():
    p = expmae("--help")
    assert p.returncode == 0
    for name in COMMANDS:
        assert re.search(rf"^  {name}\s+\S", p.stdout, re.M), name
    assert "exit codes:" in p.stdout and "1  a data or config problem" in p.stdout and "2  a usage error" in p.stdout
    m = subprocess.run([sys.executable, "-m", "expmae", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert m.returncode == 0 and m.stdout == p.stdout  # python -m expmae is the same command


@pytest.mark.parametrize("args", [(), ("bogus",), ("run", "--quiet", "--verbose"), ("init",),
                                  ("init", "--preset", "mer2023", "--videos", "x"), ("models", "remove"),
                                  ("report", "--bogus")])
def test_usage_errors_exit_2(args):
    p = expmae(*args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr


def test_config_problems_exit_1(tmp_path):
    missing = tmp_path / "my.yaml"
    for args in (("check", "--no-dag", "--configfile", str(missing)), ("models", "list", "--configfile", str(missing))):
        p = expmae(*args)
        assert p.returncode == 1, (args, p.stdout, p.stderr)
        assert str(missing) in p.stdout + p.stderr and "Traceback" not in p.stderr


def test_run_and_report_name_a_config_error_in_one_line(tmp_path):
    """Snakemake's own message for a misspelt key is the whole schema; `expmae run` stops before it starts."""
    wd = copy_workflow(tmp_path / "wf")
    (wd / "typo.yaml").write_text("classify:\n  fold: 3\n")
    for cmd in ("run", "report"):
        p = expmae(cmd, "--configfile", "typo.yaml", cwd=wd)
        assert p.returncode == 1
        lines = p.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"expmae {cmd}: config key classify") and "fold" in lines[0], p.stderr


def test_init_preset_writes_a_config_that_loads(tmp_path):
    from expmae.config import load

    release = tmp_path / "dataset-release"
    release.mkdir()
    out = tmp_path / "my.yaml"
    p = expmae("init", "--preset", "mer2023", "--root", str(release), "--quick", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert "expmae run --configfile workflow/presets/mer2023.yaml workflow/presets/quick.yaml" in p.stdout
    assert yaml.safe_load(out.read_text()) == {"data": {"root": str(release.resolve())}}
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        cfg = load([ROOT / "workflow/presets/mer2023.yaml", ROOT / "workflow/presets/quick.yaml", out])
    finally:
        os.chdir(cwd)
    assert cfg["data"]["labels"] == str(release.resolve() / "train-label.csv") and cfg["seeds"] == 1
    again = expmae("init", "--preset", "mer2023", "--root", str(release), "--out", str(out))
    assert again.returncode == 1 and again.stderr.strip() == f"expmae init: --out {out}: exists; --force replaces it"


def test_init_plain_folders_and_missing_paths(tmp_path):
    videos, labels = tmp_path / "clips", tmp_path / "labels.csv"
    videos.mkdir()
    labels.write_text("name,discrete\na,happy\n")
    out = tmp_path / "my.yaml"
    p = expmae("init", "--videos", str(videos), "--labels", str(labels), "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert yaml.safe_load(out.read_text())["data"] == {"videos": [str(videos.resolve())], "labels": str(labels.resolve())}
    bad = expmae("init", "--videos", str(tmp_path / "nope"), "--labels", str(labels), "--out", str(tmp_path / "b.yaml"))
    assert bad.returncode == 1
    assert bad.stderr.strip() == f"expmae init: --videos {tmp_path / 'nope'}: folder does not exist"
    root = expmae("init", "--preset", "mer2023", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "c.yaml"))
    assert root.returncode == 1 and "--root" in root.stderr and "folder does not exist" in root.stderr
    assert not (tmp_path / "b.yaml").exists() and not (tmp_path / "c.yaml").exists()


def test_eta_weighs_jobs_by_benchmark_records(tmp_path):
    bench = tmp_path / "benchmarks"
    (bench / "faces").mkdir(parents=True)
    (bench / "fuse").mkdir()
    for shard in ("s00000", "s00001"):
        (bench / "faces" / f"{shard}.tsv").write_text("s\th:m:s\n90.0\t0:01:30\n")
    (bench / "fuse" / "round0_all_late.tsv").write_text("s\th:m:s\n1.0\t0:00:01\n")
    (bench / "fuse" / "round0_all_fbp.tsv").write_text("s\th:m:s\n10.0\t0:00:10\n")
    (bench / "broken.tsv").write_text("not a benchmark")
    means = benchmark_means(tmp_path)
    assert means == {"faces": 90.0, "fuse_late": 1.0, "fuse": 10.0}
    console = Console(out=io.StringIO(), means=means)
    console.counts = {"faces": 2, "fuse_late": 10}
    console.done_rules = ["fuse_late"] * 10  # the cheap jobs are done: the two long ones are still to run
    console.start -= 10.0
    assert console.eta() == pytest.approx(10.0 * 180 / 10, rel=0.05)


def test_meaningful_tail_of_a_traceback(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("INFO loading\nTraceback (most recent call last):\n  File \"x.py\", line 3, in <module>\n"
                   "    main()\n    ^^^^^^\nValueError: config key classify.folds = 5: too few videos\n\n")
    assert meaningful_tail(log) == ["ValueError: config key classify.folds = 5: too few videos"]


TOY = """
rule all:
    input: "a", "c"
rule a:
    output: "a"
    shell: "echo 'note: fuse.modalities.visual ignored' >&2; touch {output}"
rule b:
    output: "b"
    log: "logs/b.log"
    shell: "printf 'Traceback (most recent call last):\\\\n  File \\"x\\", line 1\\\\nValueError: config key classify.folds = 2 is too many\\\\n' > {log}; exit 1"
rule c:
    input: "b"
    output: "c"
    shell: "touch {output}"
"""


@pytest.mark.e2e
def test_console_reads_a_real_snakemake_run(tmp_path):
    (tmp_path / "Snakefile").write_text(TOY)
    p = subprocess.run([*SNAKEMAKE, "--cores", "1", "--keep-going", "-p"], cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode != 0
    out = io.StringIO()
    console = Console(out=out)
    for line in (p.stderr + p.stdout).splitlines():
        console.feed(line)
    console.feed("note: fuse.modalities.visual: ['x'] not in classify.feature_sets, ignored")
    console.feed("note: fuse.modalities.visual: ['x'] not in classify.feature_sets, ignored")
    lines = out.getvalue().splitlines()
    assert console.counts == {"a": 1, "b": 1, "c": 1, "all": 1}
    assert [ln for ln in lines if ln.startswith("[")] == [ln for ln in lines if re.match(r"\[1/4\] a  0:00:\d\d elapsed", ln)]
    assert lines.count("note: fuse.modalities.visual: ['x'] not in classify.feature_sets, ignored") == 1
    for line in ["Error in rule b:", "    jobid: 3", "    log: logs/b.log (check log file(s) for error details)"]:
        console.feed(line)  # a retried job's second failure (--retries): still one job in the summary
    summary = console.summary(tmp_path)
    assert summary[:3] == ["1 job(s) failed:", "  b", "    log: logs/b.log"]
    assert "    | ValueError: config key classify.folds = 2 is too many" in summary
    assert "    config key: classify.folds" in summary
    assert summary[-1].startswith("Snakemake's full output: ") and summary[-1].endswith(".snakemake.log")


HEADLINE_TOY = """
rule all:
    input: "results/report/headline.txt"
rule shard:
    output: "results/s{i}.txt"
    shell: "touch {output}"
rule headline:
    input: expand("results/s{i}.txt", i=range(3))
    output: "results/report/headline.txt"
    shell: "echo 'final: fbp, weighted F1 0.42' > {output}"
"""


@pytest.mark.e2e
def test_run_prints_progress_and_ends_with_the_headline(tmp_path):
    (tmp_path / "Snakefile").write_text(HEADLINE_TOY)
    shutil.copytree(ROOT / "workflow" / "profiles", tmp_path / "workflow" / "profiles")
    dry = expmae("run", "--cores", "1", "-n", cwd=tmp_path)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert dry.stdout.splitlines() == ["dry run: 5 job(s) would run: shard 3, headline 1, all 1"]
    p = expmae("run", "--cores", "1", cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert [ln.split()[0] for ln in lines if ln.startswith("[")] == ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"]
    assert lines[-1] == "final: fbp, weighted F1 0.42"
    quiet = expmae("run", "--cores", "1", "--quiet", "--forceall", cwd=tmp_path)
    assert quiet.returncode == 0 and not [ln for ln in quiet.stdout.splitlines() if ln.startswith("[")]
    assert quiet.stdout.splitlines()[-1] == "final: fbp, weighted F1 0.42"


@pytest.mark.e2e
def test_run_failure_summary_names_job_log_and_key(tmp_path):
    """A real run of the workflow that fails in its third job: the console has one line per finished job,
    none of Snakemake's job blocks, and ends with the failed job, its log, the reason and the config key."""
    wd = placeholder_workflow(tmp_path / "wf")
    p = expmae("run", "--cores", "2", "results/classify/round0/egemaps/metrics.json", "--configfile",
               "config_tiny.yaml", cwd=wd, env={"OMP_NUM_THREADS": "1"})
    assert p.returncode == 1, p.stdout + p.stderr
    progress = [re.match(r"\[ ?(\d+)/(\d+)\] (\w+) \((.*)\)  \d:\d\d:\d\d elapsed", ln) for ln in p.stdout.splitlines()
                if ln.startswith("[")]
    assert progress and all(progress), p.stdout
    done, total = [int(m.group(1)) for m in progress], int(progress[0].group(2))
    assert done == list(range(1, total)), p.stdout  # every job but the failed one, one line each
    assert {m.group(3) for m in progress} >= {"ingest_shard", "extract_audio"}
    assert "Shell command" not in p.stdout + p.stderr and "jobid:" not in p.stdout + p.stderr
    err = p.stderr.splitlines()
    assert err[:3] == ["1 job(s) failed:", "  classify (round=0, fs=egemaps)",
                       "    log: results/logs/classify/round0_egemaps.log"], p.stderr
    assert any(ln.startswith("    | ") and "classify.folds" in ln for ln in err), p.stderr
    assert "    config key: classify.folds" in err
    assert "RuntimeWarning" not in p.stdout + p.stderr


@pytest.mark.e2e
def test_default_profile_runs_without_runtime_warning(tmp_path):
    """Snakemake's default disk_mb (2 x the input size) left a never-awaited coroutine at every DAG build."""
    wd = placeholder_workflow(tmp_path / "wf")
    p = subprocess.run([*SNAKEMAKE, "-n", "--profile", "workflow/profiles/default", "--configfile", "config_tiny.yaml"],
                       cwd=wd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "RuntimeWarning" not in p.stdout + p.stderr


def test_slurm_profile_without_slurm_says_so_once(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    bin_dir = tmp_path / "bin"  # PATH with python only: no sbatch, no sacct
    bin_dir.mkdir()
    p = expmae("run", "--profile", "workflow/profiles/slurm", "--configfile", "config_tiny.yaml", cwd=wd,
               env={"PATH": str(bin_dir)})
    assert p.returncode == 1
    assert p.stderr.splitlines() == ["expmae run: no SLURM here: `sbatch` is not on PATH, so the slurm profile cannot "
                                     "submit a job. Run on the cluster's login node, or on this machine with "
                                     "--profile workflow/profiles/default"]
    assert "sacct" not in p.stdout + p.stderr


REPORT_TOY = """
report: "workflow.rst"
rule all:
    input: "out/table.tsv", "probe/probe.json"
rule table:
    output: report("out/table.tsv", category="results")
    shell: "echo 'a\\t1' > {output}"
rule probe:
    output: json="probe/probe.json", png=report("probe/probe.png", category="probe")
    shell: "echo '{{}}' > {output.json}; touch {output.png}"
"""


@pytest.mark.e2e
def test_report_leaves_out_a_missing_optional_report_file(tmp_path):
    """`snakemake --report` stops at a report file that does not exist; `expmae report` writes the rest."""
    (tmp_path / "Snakefile").write_text(REPORT_TOY)
    (tmp_path / "workflow.rst").write_text("Toy.\n")
    subprocess.run([*SNAKEMAKE, "--cores", "1"], cwd=tmp_path, check=True, capture_output=True)
    (tmp_path / "probe" / "probe.png").unlink()
    plain = subprocess.run([*SNAKEMAKE, "--report", "r.html"], cwd=tmp_path, capture_output=True, text=True)
    assert plain.returncode != 0 and "marked for report but does not exist" in plain.stdout + plain.stderr
    p = expmae("report", "--out", "report.html", cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "note: probe/probe.json left out of the report" in p.stdout
    assert (tmp_path / "report.html").stat().st_size > 1000
    none = expmae("report", cwd=tmp_path / "probe")  # no Snakefile there
    assert none.returncode == 1 and none.stderr.startswith("expmae report: no Snakefile in")


def test_make_help_lists_every_target():
    make = ROOT / "Makefile"
    phony = re.search(r"^\.PHONY: (.*)$", make.read_text(), re.M).group(1).split()
    p = subprocess.run(["make", "--no-print-directory", "-s"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    listed = re.findall(r"^make ([\w-]+)\s", p.stdout, re.M)
    assert sorted(set(phony) - {"help"}) == sorted(listed)


def test_check_and_run_name_every_config_problem_on_its_own_line(tmp_path):
    """Exit 1 (a config problem, not a usage error): unknown key with "did you mean", a wrong type, and a
    misspelt extractor and feature set, each a line of its own; `run` stops before Snakemake starts."""
    wd = copy_workflow(tmp_path / "wf")
    (wd / "typo.yaml").write_text("classify:\n  fold: 3\n  folds: five\n")
    p = expmae("check", "--no-dag", "--configfile", "typo.yaml", cwd=wd)
    assert (p.returncode, p.stdout.splitlines(), p.stderr) == (1, [
        "error  config  config key classify.fold is not known; did you mean classify.folds?",
        'error  config  config key classify.folds = "five": expected an integer'], "")
    (wd / "names.yaml").write_text("features:\n  egemaps: {extractor: egemap}\nclassify: {feature_sets: [egemaps, minlm]}\n")
    p = expmae("run", "--configfile", "config_tiny.yaml", "names.yaml", cwd=wd)
    assert (p.returncode, p.stderr.splitlines()) == (1, [
        "expmae run: config key features.egemaps.extractor: unknown extractor 'egemap'; did you mean egemaps? "
        "(expmae features list)",
        "expmae run: config key classify.feature_sets: 'minlm' is not a `features:` entry; did you mean minilm?"])


def test_a_subcommand_s_exit_message_is_printed(monkeypatch, capsys):
    """SystemExit("message") from a subcommand: the dispatcher printed nothing and exited 1 (it kept only the code)."""
    import types

    from expmae import cli

    boom = types.ModuleType("expmae_test_boom")
    boom.main = lambda argv: (_ for _ in ()).throw(SystemExit("config key x.y: 'z' is unknown; use a or b"))
    monkeypatch.setitem(sys.modules, "expmae_test_boom", boom)
    monkeypatch.setitem(cli.COMMANDS, "boom", ("expmae_test_boom", "raises SystemExit with a message"))
    assert cli.main(["boom"]) == 1
    assert capsys.readouterr().err == "expmae boom: config key x.y: 'z' is unknown; use a or b\n"
