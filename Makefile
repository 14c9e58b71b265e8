# Two commands on a fresh machine: `make run` (venv, install, demo data, whole DAG) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
STAMP := $(VENV)/.installed-stamp
DEMO := data/demo
# The demo's data paths (config.yaml leaves data: empty): every demo target passes this preset.
DEMO_CFG := --configfile workflow/presets/demo.yaml

.PHONY: help venv demo check models run test test-fast test-e2e lint dry clean report
# A bare `make` prints the targets; the run is `make run`.
.DEFAULT_GOAL := help

# One line per target (tests/test_cli.py checks that every .PHONY target is listed).
help:
	@echo "make run      venv + install + demo data + preflight check + the whole workflow (~8 min on 2 cores, first install included)"
	@echo "make test     same install, then pytest"
	@echo "make test-fast  unit tests only: no Snakemake, no demo build (< 3 min on 2 cores)"
	@echo "make test-e2e   the Snakemake and slow tests (make test runs both tiers)"
	@echo "make check    preflight of the demo config and data (writes nothing under results/)"
	@echo "make dry      what a run would do (Snakemake dry run)"
	@echo "make report   HTML report of the last run: results/report.html (CFG=\"preset.yaml my.yaml\")"
	@echo "make models   fetch every hub model a config names (CFG=\"preset.yaml my.yaml\"; needs network)"
	@echo "make demo     write the demo data to data/demo"
	@echo "make venv     create .venv and install the package (editable)"
	@echo "make lint     snakefmt and snakemake --lint"
	@echo "make clean    remove results/ and .snakemake/"
	@echo "Your own data: .venv/bin/expmae --help"

venv: $(STAMP)

# torch/torchvision are pinned and installed first: a plain `torch` would pull a multi-GB build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

demo: $(DEMO)/labels.csv

$(DEMO)/labels.csv: | $(STAMP)
	$(BIN)/python -m expmae.demo --out $(DEMO) --force

# Preflight of the config and its data (writes nothing under results/); `make run` starts with it.
# Your data: .venv/bin/python -m expmae check --configfile workflow/presets/mer2023.yaml my.yaml
check: venv demo
	$(BIN)/python -m expmae check $(DEMO_CFG)

# Every configured hub id into the local caches (run it where the machine is online; jobs never download).
# Your data: make models CFG="workflow/presets/mer2023.yaml my.yaml"
CFG ?= workflow/presets/demo.yaml
models: venv
	$(BIN)/python -m expmae.models fetch --configfile $(CFG)

# expmae run: Snakemake with the default profile, one line per finished job, then the headline
# (`expmae run --verbose` or plain snakemake --profile workflow/profiles/default: Snakemake's whole output).
run: venv demo check
	$(BIN)/python -m expmae run --cores $(CORES) $(DEMO_CFG)

# HTML report of the last run (per-round F1 table, confusion matrix, pseudo-label pools, curves).
# Your data: make report CFG="workflow/presets/mer2023.yaml my.yaml" (outputs a run did not make are left out)
report: venv
	$(BIN)/python -m expmae report --configfile $(CFG)

dry: venv demo
	$(BIN)/snakemake --profile workflow/profiles/default --cores $(CORES) $(DEMO_CFG) -n

# Everything (CI runs this). test-fast: units only, no Snakemake, no demo build or pretraining (< 3 min on
# 2 cores); test-e2e: the rest. Markers in pyproject.toml; the slurm tests need `make test-slurm`.
# Two pytest workers (pytest-xdist): whole test files go to one worker, the modules that read the session's
# tiny run share one (tests/conftest.py); TEST_WORKERS=0 runs in one process (pdb, -x, print debugging).
TEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)
test: venv
	$(BIN)/python -m pytest -q $(XDIST)

test-fast: venv
	$(BIN)/python -m pytest -q $(XDIST) -m "not e2e and not slow and not slurm"

test-e2e: venv
	$(BIN)/python -m pytest -q $(XDIST) -m "(e2e or slow) and not slurm"

# Snakemake's linter and snakefmt (line length in pyproject.toml); both must be clean (CI runs this).
lint: venv demo
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint $(DEMO_CFG)

clean:
	rm -rf results .snakemake

-include tests/slurm/Makefile.inc
