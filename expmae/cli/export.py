"""`expmae export`: cached feature sets as MERBench's `<out>/<set>_UTT/<name>.npy` folders, with a labels CSV.

The work is in expmae.export (also `python -m expmae.export`); this module is the subcommand's entry point.
"""
from __future__ import annotations

from expmae.export import main

__all__ = ["main"]
