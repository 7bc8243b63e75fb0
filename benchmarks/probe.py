"""Run one `hpc-radr` command in this process, then write which heavy modules it imported (JSON) to the file
named by the first argument: ``python -m benchmarks.probe OUT.json status RUN_DIR``."""

from __future__ import annotations

import json
import sys

HEAVY = ("tensorflow", "keras", "birdnet_analyzer", "librosa", "numba", "matplotlib", "scipy", "pandas",
         "pyarrow", "numpy", "submitit", "pydantic")


def main() -> None:
    out, args = sys.argv[1], sys.argv[2:]
    from hpc_radr.cli import app

    code = 0
    try:
        app(args)
    except SystemExit as done:
        code = done.code or 0
    with open(out, "w") as handle:
        json.dump({"args": args, "exit_code": code, "imported": {m: m in sys.modules for m in HEAVY},
                   "modules": len(sys.modules)}, handle)


if __name__ == "__main__":
    main()
