"""The `expmae` console command (also `python -m expmae`): one subcommand per task, run from the repository root.

Each subcommand is a module with `main(argv) -> int`; this module only dispatches, so `expmae --help`
starts without importing torch or Snakemake.
"""
from __future__ import annotations

import importlib
import os
import sys

# name -> (module whose main(argv) runs it, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("expmae.cli.init", "write a commented my.yaml for a MER preset or your own folders"),
    "check": ("expmae.check", "preflight: read the config and the data, run nothing, print one table"),
    "run": ("expmae.cli.run", "run the workflow (Snakemake, profile workflow/profiles/default): a line per job"),
    "report": ("expmae.cli.report", "HTML report of the last run of a config (results/report.html)"),
    "models": ("expmae.models", "models list | fetch: the models a config names, present or missing"),
    "features": ("expmae.features.__main__", "features list: every extractor, its modality, size and defaults"),
    "predict": ("expmae.predict.__main__", "predict new videos with a run's bundle (results/bundle)"),
    "export": ("expmae.cli.export", "cached feature sets as MERBench <set>_UTT/<name>.npy folders + labels CSV"),
}

HELP = """usage: expmae <command> [options]   (the same: python -m expmae <command>)

Turn folders of face videos into a trained multimodal emotion recogniser. Run it from the
repository root (the folder with the Snakefile); `expmae <command> --help` for each command.

commands:
{commands}

A first run with your own data:
  expmae init --preset mer2023 --root /data/mer2023/dataset-release --quick
  expmae check --configfile workflow/presets/mer2023.yaml workflow/presets/quick.yaml my.yaml
  expmae run   --configfile workflow/presets/mer2023.yaml workflow/presets/quick.yaml my.yaml
  expmae report --configfile workflow/presets/mer2023.yaml workflow/presets/quick.yaml my.yaml

exit codes:
  0  done
  1  a data or config problem (the message names the file or config key), or a failed job
  2  a usage error (unknown command or option)
"""


def usage() -> str:
    width = max(map(len, COMMANDS))
    return HELP.format(commands="\n".join(f"  {n:<{width}}  {h}" for n, (_, h) in COMMANDS.items()))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"expmae: unknown command {name!r}; commands: {', '.join(COMMANDS)} (expmae --help)", file=sys.stderr)
        return 2
    try:
        rc = importlib.import_module(COMMANDS[name][0]).main(rest)
    except BrokenPipeError:  # `expmae features list | head`: the reader has what it wanted
        sys.stdout = open(os.devnull, "w")
        return 0
    except SystemExit as e:  # argparse: 0 after --help, 2 on a usage error
        if isinstance(e.code, str):  # SystemExit("message"): the interpreter would print it; say it, then 1
            print(f"expmae {name}: {e.code}" if not e.code.startswith("expmae") else e.code, file=sys.stderr)
            return 1
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except (ValueError, FileNotFoundError) as err:  # config and data errors name their key or file
        if os.environ.get("EXPMAE_TRACEBACK"):
            raise
        print("\n".join(f"expmae {name}: {line}" for line in str(err).splitlines()), file=sys.stderr)
        return 1
    # 2 is for usage errors only (argparse's SystemExit above): a subcommand that returns non-zero met a data
    # or config problem
    return 1 if rc else 0
