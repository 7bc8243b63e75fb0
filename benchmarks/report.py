"""latest.json (everything measured) and latest.md (the figures, the targets, the machine) from one benchmark."""

from __future__ import annotations

import json
from pathlib import Path

from hpc_radr.atomic import write_atomic


def _get(data: dict, *path, default=None):
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


def targets(results: dict) -> list[dict]:
    """Each target with its measured value and whether it is met (None: not measured in this benchmark)."""
    s = results["sections"]
    rows = []

    def add(name, value, limit, better, unit=""):
        met = None if value is None else (value >= limit if better == "higher" else value < limit)
        rows.append({"target": name, "value": value, "limit": limit, "unit": unit, "met": met})

    sweep, naive = s.get("sweep"), s.get("naive")
    if sweep and naive:
        add("naive / project, CPU-seconds", naive["cpu_s_108"] / sweep["measured"]["cpu_s"], 5.0, "higher", "x")
        add("naive / project, wall time", naive["wall_s_108"] / sweep["measured"]["wall_s"], 5.0, "higher", "x")
    if sweep:
        rows.append({"target": "project / floor, CPU-seconds", "value": sweep["ratio_to_floor"]["cpu"],
                     "limit": 1.3, "unit": "x", "met": sweep["ratio_to_floor"]["cpu"] <= 1.3})
        rows.append({"target": "project / floor, wall time", "value": sweep["ratio_to_floor"]["wall"],
                     "limit": 1.3, "unit": "x", "met": sweep["ratio_to_floor"]["wall"] <= 1.3})
    cli = s.get("cli", {})
    for name in ("--help", "status", "collect", "collect, report rebuilt",
                 "collect (merge only: hpc_radr.collect.collect)"):
        if name in cli:
            add(f"`hpc-radr {name}` median wall" if not name.startswith("collect (") else f"{name} median wall",
                cli[name]["wall_median_s"], 0.5, "lower", "s")
    scale = s.get("scale", {})
    if "status_1000" in scale:
        add(f"status on {scale['status_1000']['recorded']['tasks']} tasks, median wall",
            scale["status_1000"]["status"]["wall_median_s"], 3.0, "lower", "s")
    if "collect_10000" in scale:
        files = scale["collect_10000"]["built"]["result_files"]
        add(f"collect on {files} results, median wall", scale["collect_10000"]["collect"]["wall_median_s"], 3.0,
            "lower", "s")
        if "collect, report rebuilt" in scale["collect_10000"]:
            add(f"collect on {files} results, report rebuilt, median wall",
                scale["collect_10000"]["collect, report rebuilt"]["wall_median_s"], 3.0, "lower", "s")
        add(f"collect (merge only) on {files} results, median wall",
            scale["collect_10000"]["collect (merge only: hpc_radr.collect.collect)"]["wall_median_s"], 3.0,
            "lower", "s")
    for name, found in s.get("estimate", {}).get("cases", {}).items():
        for source, compared in found["estimates"].items():
            for what in ("cpu", "wall"):
                error = abs(compared[f"{what}_error"])
                rows.append({"target": f"estimate ({source}) vs measured {'CPU-hours' if what == 'cpu' else 'wall'}"
                             f", {name}", "value": error * 100, "limit": 30, "unit": "% off",
                             "met": error <= s["estimate"]["tolerance"]})
    grown = _get(s, "data-scale", "growth")
    if grown:
        rows.append({"target": f"largest growth exponent of CPU, {grown['from']} -> {grown['to']} (measured phases)",
                     "value": grown["max_exponent"], "limit": grown["exponent_target"], "unit": "", "op": "<=",
                     "met": grown["exponents_met"]})
        share = grown["smote_share_of_fit"]
        rows.append({"target": f"smote upsampling / its fit, CPU, at {grown['to']}",
                     "value": None if share is None else share * 100, "limit": grown["smote_share_target"] * 100,
                     "unit": "%", "op": "<=", "met": grown["smote_share_met"]})
    if cli.get("no_tensorflow"):
        clean = all(not any(p["sys_modules"][m] for m in ("tensorflow", "keras", "birdnet_analyzer"))
                    and not p["importtime_tensorflow"] for p in cli["no_tensorflow"].values())
        rows.append({"target": "--help, status, collect never import TensorFlow", "value": clean, "limit": True,
                     "unit": "", "met": clean})
    return rows


def _f(value, digits=2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def markdown(results: dict) -> str:
    m = results["machine"]
    s = results["sections"]
    load = ", ".join(f"{x:.2f}" for x in m["load_average_at_start"])
    lines = [f"# hpc-radr benchmark, {m['date']}", "",
             f"Command: `{m['command']}` ({'quick' if results['quick'] else 'full size'}; sections: "
             f"{', '.join(s)}); total "
             f"{results['total_seconds'] / 60:.1f} min.", "",
             f"Machine: {m['cpu_model']}, {m['cores']} cores ({m['cores_usable']} usable), {m['ram_gb']} GB RAM, "
             f"{m['os']}, Python {m['python']}; load average at start {load}.",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
             f"Code: {m['git_commit'][:12]}{' with uncommitted changes' if m['git_dirty'] else ''}.", ""]
    if set(s) - {"upsampling", "estimate", "data-scale"}:  # those describe their own data and epochs
        lines += [f"Data: synthetic demo data {results['demo_size']}, {results['epochs']} epochs; NUMBA_CACHE_DIR "
                  f"{results['numba_cache_dir']} (warm, shared by both sides).", ""]
    lines += ["CPU-seconds: user + system of every process of a command's tree (kernel accounting, `wait4`). "
              "\"Other load\": CPU-seconds other processes used on the machine meanwhile (inflates wall times).", ""]
    rows = [[t["target"], f"{_f(t['value'])} {t['unit']}".strip(),
             f"{t.get('op') or ('>=' if 'naive' in t['target'] else '<=' if 'floor' in t['target'] else '<')} "
             f"{t['limit']}"
             if not isinstance(t["limit"], bool) else "yes", {True: "met", False: "NOT met", None: "-"}[t["met"]]]
            for t in targets(results)]
    if rows:
        lines += ["## Targets", ""] + _table(["target", "measured", "target", ""], rows)

    sweep, naive = s.get("sweep"), s.get("naive")
    if sweep:
        f = sweep["floor"]
        meas = sweep["measured"]
        lines += ["## The sweep: hpc-radr against naive and against its floor", ""]
        table = [["hpc-radr (`submit --executor local --workers "
                  f"{sweep['workers']}`, {sweep['runs']} unique runs)", _f(meas["cpu_s"], 0), _f(meas["wall_s"], 0),
                  _f(meas["foreign_cpu_s"], 0), "measured"],
                 ["floor (extraction + fits, no start-up)", _f(f["cpu_s"], 0), _f(f["wall_s"], 0), "-",
                  f"extraction {_f(f['extract_cpu_s'], 0)} CPU-s + fits {_f(f['fit_cpu_sum_s'], 0)} CPU-s"]]
        if naive:
            table.append([f"naive (108 processes, each extracts and trains, {naive['slots']} at a time)",
                          _f(naive["cpu_s_108"], 0), _f(naive["wall_s_108"], 0), _f(naive["foreign_cpu_s"], 0),
                          naive["note"]])
        lines += _table(["", "CPU-s", "wall s", "other load CPU-s", "how"], table)
        lines += [f"hpc-radr / floor: {_f(sweep['ratio_to_floor']['cpu'])}x CPU, "
                  f"{_f(sweep['ratio_to_floor']['wall'])}x wall."]
        cores = results["machine"]["cores_usable"]
        loads = [("hpc-radr sweep", meas["foreign_cpu_s"], meas["wall_s"])]
        if naive:
            loads.append(("naive sweep", naive["foreign_cpu_s"], naive["measured_wall_s"]))
        for name, other, wall in loads:
            if other and other > 0.05 * wall * cores:
                lines += [f"**Other load during the {name}: {_f(other, 0)} CPU-s, {100 * other / (wall * cores):.0f}% "
                          "of the machine: its wall time is inflated by it (its CPU-seconds are not).**"]
        if naive:
            lines += [f"naive / hpc-radr: {_f(naive['cpu_s_108'] / meas['cpu_s'])}x CPU, "
                      f"{_f(naive['wall_s_108'] / meas['wall_s'])}x wall."]
            p = naive["per_process"]
            lines += ["", f"A naive process: {_f(p['cpu_s_mean'], 1)} CPU-s on average ({_f(p['cpu_s_min'], 1)}-"
                      f"{_f(p['cpu_s_max'], 1)}), {_f(p['wall_s_mean'], 1)} s wall: TensorFlow import "
                      f"{_f(p['import_s_mean'], 1)} s, extraction of {_f(p['clips_mean'], 0)} clips "
                      f"{_f(p['extract_s_mean'], 1)} s, fit {_f(p['fit_s_mean'], 1)} s (wall, in-process)."]
        lines += ["", "Extraction per shard of the clip store (per unit in runs before the clip store):", ""]
        lines += _table(["shard", "clips", "workers", "extract wall s", "extract CPU-s", "ms CPU per clip"],
                        [[e.get("shard", e.get("unit")), e["clips"], e["workers"], _f(e["extract_s"], 1),
                          _f(e["extract_cpu_s"], 1),
                          _f(1000 * e["extract_cpu_s"] / e["clips"], 0)] for e in sweep["extraction"]])
        r = sweep["mean_per_run_s"]
        lines += [f"Mean per run in the sweep: cache load {_f(r['cache_load_s'], 3)} s, fit {_f(r['fit_s'], 2)} s, "
                  f"evaluate {_f(r['evaluate_s'], 3)} s, export {_f(r['export_s'], 3)} s, run CPU "
                  f"{_f(r['run_cpu_s'], 2)} s; peak memory of the whole local sweep "
                  f"{_f(meas['tree_peak_pss_mb'], 0)} MB PSS ({_f(meas['tree_peak_rss_mb'], 0)} MB RSS summed).", ""]

    over = s.get("overhead")
    if over:
        lines += ["## Per-run overhead: 1 run per process against N runs per process", ""]
        one, multi = over["one_run_per_process_mean"], over["n_runs_per_process"]
        rows = []
        for label, d in (("1 run per process (mean of "
                          f"{len(over['one_run_per_process'])})", one),
                         (f"{multi['runs']} runs in one process", multi)):
            rows.append([label, _f(d["cpu_s"], 1), _f(d["wall_s"], 1), _f(d["fit_s"], 1),
                         _f(d["tensorflow_import_s"], 1), _f(d["cache_load_s"], 3), _f(d["evaluate_s"], 2),
                         _f(d["export_s"], 2), _f(d["start_and_rest_s"], 1), _f(d["overhead_cpu_s_per_run"], 2),
                         _f(d["overhead_wall_s_per_run"], 2)])
        lines += _table(["", "CPU-s", "wall s", "fit s", "TF import s", "cache load s", "evaluate s", "export s",
                         "start + rest s", "overhead CPU-s / run", "overhead wall s / run"], rows)
        if "in_the_sweep_cpu_s_per_run" in over:
            lines += [f"In the whole sweep: {_f(over['in_the_sweep_cpu_s_per_run'], 2)} CPU-s per run above the "
                      "floor (every start-up, import, cache load, evaluation, export, submitit and the CLI).", ""]

    cli = s.get("cli")
    if cli:
        lines += ["## Command line (demo-sized run directory, 108 configurations)", ""]
        rows = [[f"`{name}`" if not name.startswith("collect (") else name, _f(d["wall_median_s"], 3),
                 f"{_f(d['wall_min_s'], 3)}-{_f(d['wall_max_s'], 3)}", _f(d["cpu_median_s"], 3), d["runs"],
                 _f(d["max_rss_mb"], 0)]
                for name, d in cli.items() if isinstance(d, dict) and "wall_median_s" in d]
        lines += _table(["command", "median wall s", "range s", "median CPU-s", "runs", "max RSS MB"], rows)
        b = cli.get("collect breakdown (one process)")
        if b:
            lines += ["Where `collect` spends its time (one process, wall s / CPU-s):", ""]
            lines += _table(["part", "wall s", "CPU-s"], [[k, _f(v, 3), _f(b["cpu_s"][k], 3)]
                                                          for k, v in b["wall_s"].items()])
        proof = cli.get("no_tensorflow", {})
        if proof:
            lines += ["TensorFlow check (module in `sys.modules` after the command ran in-process; and "
                      "`python -X importtime`):", ""]
            mods = ["tensorflow", "keras", "birdnet_analyzer", "matplotlib", "scipy", "pandas", "numpy"]
            lines += _table(["command", *mods, "TF in -X importtime"],
                            [[n, *[_f(p["sys_modules"][m]) for m in mods], _f(p["importtime_tensorflow"])]
                             for n, p in proof.items()])

    scale = s.get("scale")
    if scale:
        lines += ["## Scale", ""]
        st = scale["status_1000"]
        rec = st["recorded"]
        lines += [f"`status` on a run directory of {rec['tasks']} runs ({rec['configurations']} configurations), "
                  f"one training array of {rec['tasks']} tasks, from recorded Slurm 22.05 output "
                  f"({rec['sacct_lines']} sacct lines, {rec['squeue_lines']} squeue lines; states "
                  + ", ".join(f"{k} {v}" for k, v in rec["slurm_states"].items())
                  + f"). Status counts: {st['counts']}. Slurm calls per status: "
                  + "; ".join(f"`{c}`"[:90] + ("...`" if len(c) > 85 else "") for c in st["slurm_calls_per_status"])
                  + ".", ""]
        rows = [[f"`{name}`", _f(d["wall_median_s"], 3), f"{_f(d['wall_min_s'], 3)}-{_f(d['wall_max_s'], 3)}",
                 _f(d["cpu_median_s"], 3), d["runs"]] for name, d in st.items() if isinstance(d, dict)
                and "wall_median_s" in d]
        c = scale["collect_10000"]
        rows += [[f"{name} ({c['built']['result_files']} results)", _f(d["wall_median_s"], 3),
                  f"{_f(d['wall_min_s'], 3)}-{_f(d['wall_max_s'], 3)}", _f(d["cpu_median_s"], 3), d["runs"]]
                 for name, d in c.items() if isinstance(d, dict) and "wall_median_s" in d]
        lines += _table(["command", "median wall s", "range s", "median CPU-s", "runs"], rows)
        b = c.get("breakdown (one process)")
        if b:
            lines += [f"Where `collect` spends its time on {c['built']['result_files']} results:", ""]
            lines += _table(["part", "wall s", "CPU-s"], [[k, _f(v, 3), _f(b["cpu_s"][k], 3)]
                                                          for k, v in b["wall_s"].items()])

    mem = s.get("memory")
    if mem:
        lines += ["## Peak memory", "",
                  "Largest process: the kernel's ru_maxrss. Tree: sampled every 0.1 s, summed over the command's "
                  "processes; PSS counts shared pages once (what a Slurm cgroup roughly charges), RSS counts them "
                  "in every process.", ""]
        lines += _table(["task", "largest process MB", "tree peak PSS MB", "tree peak RSS MB", "processes",
                         "CPU-s", "wall s"],
                        [[name, _f(d["max_rss_mb"], 0), _f(d["tree_peak_pss_mb"], 0), _f(d["tree_peak_rss_mb"], 0),
                          d["tree_peak_processes"], _f(d["cpu_s"], 1), _f(d["wall_s"], 1)]
                         for name, d in mem.items()])
    if s.get("upsampling"):
        lines += _upsampling(s["upsampling"])
    if s.get("estimate"):
        lines += _estimate(s["estimate"])
    if s.get("data-scale"):
        lines += data_scale_tables(s["data-scale"])
    lines += ["## Time per section", ""]
    lines += _table(["section", "minutes"], [[k, _f(v / 60, 1)] for k, v in results["section_seconds"].items()])
    return "\n".join(lines)


def _estimate(section: dict) -> list[str]:
    """`plan --estimate` against the sweep it priced."""
    lines = ["## The cost estimate against the cost", "",
             f"`hpc-radr plan --estimate --executor local --workers {section['workers']} --epochs "
             f"{section['epochs']}` (its probe: a sample of the clips extracted, three short fits), then the sweep "
             "itself with the same options (`hpc-radr submit`); the 10x sweep also priced from the demo sweep's "
             "run directory (`--calibrate-from`). Measured: CPU-seconds of the submit command's whole process tree "
             f"and its wall time. Target: within {section['tolerance']:.0%} of both.", ""]
    rows = []
    for name, found in section["cases"].items():
        measured = found["measured"]
        for source, compared in found["estimates"].items():
            rows.append([name, f"{found['clips']:,}", found["runs"], source,
                         f"{_f(compared['cpu_s'], 0)} / {_f(measured['cpu_s'], 0)}", f"{compared['cpu_error']:+.0%}",
                         f"{_f(compared['wall_s'], 0)} / {_f(measured['wall_s'], 0)}",
                         f"{compared['wall_error']:+.0%}", f"+-{compared['uncertainty']:.0%}",
                         "yes" if compared["within"] else "NO"])
        lines_probe = found["probe_cost"]
        rows[-1 - (len(found["estimates"]) - 1)][3] += (f" ({_f(lines_probe['wall_s'], 0)} s, "
                                                         f"{_f(lines_probe['cpu_s'], 0)} CPU-s)")
    lines += _table(["sweep", "clips", "runs", "calibration (its cost)", "CPU-s estimated / measured",
                     "off", "wall s estimated / measured", "off", "stated uncertainty", "within 30%"], rows) + [""]
    kinds = []
    for name, found in section["cases"].items():
        recorded = found.get("actual")
        if not recorded:
            continue
        for source, compared in found["estimates"].items():
            estimated = {k["kind"]: k["cpu_hours"] * 3600 for k in compared["per_kind"]}
            kinds.append([name, source] + [f"{_f(estimated.get(kind, 0.0), 0)} / {_f(recorded['cpu_s'][kind], 0)}"
                                           for kind in ("embed", "train")])
    if kinds:
        lines += ["Per job kind: CPU-seconds estimated against those the run directory recorded (extraction: its "
                  "calls and TensorFlow's import; training: each run and each process' import). The rest of the "
                  "measured CPU-seconds is the submit command's own.", ""]
        lines += _table(["sweep", "calibration", "extraction CPU-s", "training CPU-s"], kinds) + [""]
    return lines


def _mb(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def data_scale_tables(section: dict) -> list[str]:
    """Every phase at 1x, 10x and 100x: CPU-seconds, peak memory, growth exponent from 10x to 100x."""
    sizes, grown = section["sizes"], section["growth"]
    names = list(sizes)
    lines = ["## At the size labs have: every phase at " + ", ".join(names), "",
             f"Dataset `{section['dataset']}`, upsampling ratio {section['ratio']} per mode, no focal loss, seed 1, "
             f"{section['epochs']} epochs for every size (early stopping cannot end a fit that short: fit costs "
             "compare per epoch), `hpc-radr run-task RUN_DIR --run K --force --threads 2` per run (CPU per phase "
             "from the result file's process-CPU timings; fit without its upsampling), extraction with "
             "`run-task --first-clip` (2 workers), then `hpc-radr collect`. Memory: the training process's peak "
             "RSS at the end of the phase (kernel high-water mark); extraction, collect and the training task: "
             "summed RSS of the process tree, sampled every 0.1 s, or the largest process's ru_maxrss when "
             "larger.", ""]
    for name, size in sizes.items():
        lines.append(f"- **{name}**: {size['dataset']['positives']:,} positives + {size['dataset']['negatives']:,} "
                     f"negatives for training, {size['test']['positives']:,} + {size['test']['negatives']:,} test; "
                     f"{size['clips']:,} unique clips; embeddings {size['embeddings']}; extraction "
                     f"{size['extraction']['source']}"
                     + (f" ({size['extraction']['from']})" if "from" in size["extraction"] else "") + ".")
    lines.append("")
    phases = section["phases"]
    rows = []
    for phase in phases[names[-1]]:
        exponent = grown["exponents"][phase]
        cells = [phase]
        for name in names:
            found = phases[name].get(phase, {})
            extrapolated = found.get("source") == "extrapolated"
            cells.append(f"{'~' if extrapolated else ''}{_f(found.get('cpu_s'), 2)}")
            cells.append(_mb(found.get("peak_rss_mb")))
        cells.append(("~" if exponent["extrapolated"] else "") + _f(exponent["cpu"], 2)
                     + (" (extrapolated)" if exponent["extrapolated"] else ""))
        cells.append(_f(exponent["memory"], 2))
        rows.append(cells)
    header = ["phase"] + [h for name in names for h in (f"CPU-s {name}", f"peak MB {name}")] + [
        f"CPU exponent {grown['from']}->{grown['to']}", "memory exponent"]
    lines += _table(header, rows)
    epochs = {name: sorted({r["epochs_run"] for r in sizes[name]["runs"].values()}) for name in names}
    per_epoch = [[f"fit {mode}"] + [_f(phases[name][f"fit {mode}"]["per_epoch_cpu_s"], 3) for name in names]
                 for mode in section["modes"]]
    lines += [f"Epochs run: {epochs}. Fit CPU-s per epoch:", ""]
    lines += _table(["phase"] + names, per_epoch)
    share, sweep_share = grown["smote_share_of_fit"], grown.get("smote_share_of_sweep_epochs_fit")
    lines += [f"Largest measured CPU exponent {grown['from']}->{grown['to']}: {_f(grown['max_exponent'])} (target "
              f"<= {grown['exponent_target']}: {'met' if grown['exponents_met'] else 'NOT met'}). smote upsampling at "
              f"{grown['to']}: {_f(None if share is None else share * 100, 1)}% of its fit's CPU (target <= "
              f"{grown['smote_share_target']:.0%}: {'met' if grown['smote_share_met'] else 'NOT met'}); against a "
              f"fit of the sweep's {grown.get('sweep_epochs')} epochs (per-epoch CPU x epochs, extrapolated): "
              f"{_f(None if sweep_share is None else sweep_share * 100, 1)}%. "
              f"From 1x to 10x the largest exponent was {_f(section['growth_1x_10x']['max_exponent'])} (fixed costs, "
              "TensorFlow's start and Keras' graph building, weigh most at small sizes, so most phases grow less "
              "than linearly there).", ""]
    model = section["memory_model"]
    lines += ["Peak memory as a line in the training samples (through the two largest sizes): training task "
              f"{_f(model['train']['base_mb'], 0)} MB + {_f(model['train']['per_sample_mb'] * 1000, 2)} MB per "
              f"1,000 samples; collect {_f(model['collect']['base_mb'], 0)} MB + "
              f"{_f(model['collect']['per_sample_mb'] * 1000, 2)} MB per 1,000 samples; an extraction task of "
              f"{model['embed']['clips']:,} clips {_mb(model['embed']['peak_rss_mb'])} MB.", ""]
    return lines


def _upsampling(up: dict) -> list[str]:
    """BirdNET's own upsampling against hpc-radr's, per size and mode."""
    lines = ["## Upsampling: BirdNET's own against hpc-radr's (the same arrays)", "",
             f"BirdNET-Analyzer 2.4's `model.upsampling(x, y, {up['ratio']}, mode)` against "
             f"`hpc_radr.birdnet.upsampling`, seed {up['seed']}, on random {up['dim']}-d float32 embeddings "
             f"(positives shifted by {up['shift']}: the classes overlap). Wall seconds: median of the runs in "
             "brackets (a call is repeated only while its runs stay under 20 s). CPU-s include the BLAS threads "
             "of the fast smote's matrix products. \"Identical\": `np.array_equal` on x and y, same dtype. "
             f"BirdNET's smote above {up['birdnet_smote_max']:,} samples is not run; its time is estimated as "
             "synthetic samples x the time of BirdNET's neighbour search, measured on sampled anchors (whose "
             "neighbours are compared with the fast search's).", ""]
    rows = []
    for r in up["rows"]:
        own, fast = r.get("birdnet"), r["fast"]
        if own:
            birdnet = [f"{_f(own['wall_s'])} ({own['runs']})", _f(own["cpu_s"]), _f(own["other_load_cpu_s"], 1)]
            same = _f(r["identical"])
        else:
            estimate = r["birdnet_estimate"]
            birdnet = [f"~{_f(estimate['wall_s'], 0)} (estimated)", "-", "-"]
            same = f"neighbours of {estimate['sampled_anchors']} anchors: {_f(estimate['neighbours_identical'])}"
        ties = f"{r['fallback_anchors']} of {r['anchors']:,}" if r["mode"] == "smote" else "-"
        rows.append([f"{r['samples']:,}", f"{r['positives']:,}", r["mode"], f"{r['synthetic']:,}", *birdnet,
                     f"{_f(fast['wall_s'], 3)} ({fast['runs']})", _f(fast["cpu_s"], 3), f"{_f(r['speedup'], 1)}x",
                     same, ties])
    return lines + _table(["samples", "positives", "mode", "synthetic", "BirdNET wall s", "BirdNET CPU-s",
                           "other load CPU-s", "fast wall s", "fast CPU-s", "speed-up (wall)", "identical",
                           "anchors with ties (BirdNET's sort)"], rows)


def write_report(results: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    results = {**results, "targets": targets(results)}
    json_path, md_path = out / "latest.json", out / "latest.md"
    text = json.dumps(results, indent=2, default=str) + "\n"
    write_atomic(json_path, lambda handle: handle.write(text.encode()))
    md = markdown(results) + "\n"
    write_atomic(md_path, lambda handle: handle.write(md.encode()))
    return json_path, md_path


if __name__ == "__main__":  # re-render latest.md from a latest.json: python -m benchmarks.report RESULTS.json
    import sys

    found = json.loads(Path(sys.argv[1]).read_text())
    found.pop("targets", None)
    print(*write_report(found, Path(sys.argv[1]).parent), sep="\n")
