"""`python -m expmae <command>`: check (preflight of a config and its data), models (list / fetch)."""
import sys

COMMANDS = {"check": "expmae.check", "models": "expmae.models"}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(f"usage: python -m expmae {{{'|'.join(COMMANDS)}}} ...", file=sys.stderr)
        return 2
    import importlib

    return importlib.import_module(COMMANDS[sys.argv[1]]).main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
