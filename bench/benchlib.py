"""Loading one benchmark script from another (bench/import.py cannot be
imported by name: `import` is a Python keyword)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def load(script: str):
    """bench/<script>.py as a module, loaded once."""
    name = f"keyparty_bench_{script}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
