"""What the cluster allows, read before a plan is made: MaxArraySize, whether accounting is on, and how many
more jobs the user may submit (``MaxSubmitJobsPerUser`` of the QOS, ``MaxSubmitJobs`` of the association).

Pure parsers of ``scontrol show config`` and ``sacctmgr -P`` output, and one query that runs them.
"""

from __future__ import annotations

import getpass
import re
import subprocess
from dataclasses import dataclass

from hpc_radr.errors import HpcRadrError


class SiteUnreadable(HpcRadrError, RuntimeError):
    """scontrol did not answer: not a Slurm login node, or SLURM_CONF is not set."""


@dataclass(frozen=True)
class Site:
    """The cluster's limits that shape a job plan."""

    max_array_size: int
    accounting: bool
    submit_limit: int | None  # more jobs the user may submit now; None: no limit known


DISABLED = "accounting_storage/none"  # AccountingStorageType of a cluster without accounting
DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's own default


def parse_config(text: str) -> tuple[int, bool]:
    """(MaxArraySize, accounting on) from ``scontrol show config``."""
    size = re.search(r"^MaxArraySize\s*=\s*(\d+)", text, re.MULTILINE)
    storage = re.search(r"^AccountingStorageType\s*=\s*(\S+)", text, re.MULTILINE)
    if not size:
        raise SiteUnreadable("no MaxArraySize in `scontrol show config`")
    return int(size.group(1)), bool(storage) and storage.group(1) != DISABLED


def _number(value: str) -> int | None:
    return int(value) if value.strip().isdigit() else None


def parse_limit(associations: str, qos_table: str, qos: str | None) -> int | None:
    """The smallest submit limit that applies: the association's MaxSubmitJobs and the MaxSubmitJobsPerUser of
    the QOS the jobs use (``qos``, else the association's default QOS).

    ``associations``: ``sacctmgr -n -P show assoc user=U format=DefaultQOS,MaxSubmit`` lines;
    ``qos_table``: ``sacctmgr -n -P show qos format=Name,MaxSubmitPU`` lines."""
    limits: list[int] = []
    default_qos = None
    for line in associations.splitlines():
        fields = line.split("|")
        if len(fields) >= 2:
            default_qos = default_qos or fields[0].strip() or None
            if (found := _number(fields[1])) is not None:
                limits.append(found)
    wanted = qos or default_qos or "normal"
    for line in qos_table.splitlines():
        name, _, limit = line.partition("|")
        if name.strip() == wanted and (found := _number(limit)) is not None:
            limits.append(found)
    return min(limits) if limits else None


def _run(command: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise SiteUnreadable(f"{command[0]} not found: is this a Slurm login node? (use --executor local "
                             "here)") from None


def query(qos: str | None) -> Site:
    """The cluster's limits for a submission with ``qos`` (one scontrol call; sacctmgr and squeue only where
    accounting is on)."""
    config = _run(["scontrol", "show", "config"])
    if config.returncode != 0:
        reason = (config.stderr.strip().splitlines() or ["no output"])[-1]
        raise SiteUnreadable(f"cannot read the cluster's configuration: {reason} (is SLURM_CONF set?)")
    max_array, accounting = parse_config(config.stdout)
    if not accounting:
        return Site(max_array, False, None)
    user = getpass.getuser()
    associations = _run(["sacctmgr", "-n", "-P", "show", "assoc", f"user={user}", "format=DefaultQOS,MaxSubmit"])
    qos_table = _run(["sacctmgr", "-n", "-P", "show", "qos", "format=Name,MaxSubmitPU"])
    if associations.returncode != 0 or qos_table.returncode != 0:
        return Site(max_array, True, None)
    limit = parse_limit(associations.stdout, qos_table.stdout, qos)
    if limit is None:
        return Site(max_array, True, None)
    queued = _run(["squeue", "-h", "-r", "-u", user, "-o", "%i"])
    return Site(max_array, True, limit - len(queued.stdout.split()))
