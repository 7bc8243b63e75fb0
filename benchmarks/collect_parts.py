"""Where `hpc-radr collect` spends its time, in one fresh process: imports, merging the result files into the
tables, and building the report (analysis, figures, HTML). Prints JSON. ``python -m benchmarks.collect_parts RUN``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main() -> None:
    run_dir = Path(sys.argv[1])
    parts: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def timed(name, work):
        wall, used = time.perf_counter(), time.process_time()
        value = work()
        parts[name], cpu[name] = time.perf_counter() - wall, time.process_time() - used
        return value

    timed("import_cli", lambda: __import__("hpc_radr.cli"))
    timed("import_collect", lambda: __import__("hpc_radr.collect"))
    from hpc_radr.collect import collect, merge
    from hpc_radr.manifest import load
    from hpc_radr.run_dir import RunDir

    timed("merge_only", lambda: merge(load(RunDir(run_dir))))
    found = timed("collect_merge_and_write", lambda: collect(run_dir))
    timed("import_report", lambda: __import__("hpc_radr.report"))
    timed("import_figures", lambda: __import__("hpc_radr.report.figures"))
    from hpc_radr.report import build_report

    timed("build_report", lambda: build_report(run_dir, (found.table, found.problems)))
    print(json.dumps({"wall_s": parts, "cpu_s": cpu}))


if __name__ == "__main__":
    main()
