"""Second Slurm test clusters that follow the rules of other sites, for pytest.

The project's default test cluster (`scripts/slurm-cluster start`, state in /tmp/hpc-radr-slurm, TCP ports
6817-6820) is one generous site. Real university clusters differ: no accounting, a job-submit policy on the GPU
partition, a QOS that caps queued jobs per user, smaller nodes. `scripts/slurm-cluster start` reproduces each rule
with an option (see `scripts/slurm-cluster --help`); this module starts such a variant next to the default cluster,
on its own state directory and its own ports, and stops it again whatever the test did:

    with site_cluster("noacct", "--no-accounting") as env:
        subprocess.run(["sbatch", "--wrap", "true"], env=env, check=True)

`env` is os.environ plus the exports of the variant's env file (SLURM_CONF, HPC_RADR_SLURM_DIR) and
HPC_RADR_SLURM_PORT_BASE, so every Slurm client command run with it talks to the variant only.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "slurm-cluster"

# The default cluster's ports (HPC_RADR_SLURM_PORT_BASE=6817: slurmctld, slurmd, slurmdbd, MariaDB). Variants take
# one block of four ports each from PORT_FIRST on, never these.
DEFAULT_PORTS = range(6817, 6821)
PORT_FIRST = 7000
PORT_BLOCKS = 500
PORTS_PER_CLUSTER = 4

START_TIMEOUT_S = 300
STOP_TIMEOUT_S = 180

_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,30}")


class SiteClusterError(RuntimeError):
    """`scripts/slurm-cluster start` or `stop` failed; the message carries the script's stderr."""


def state_dir(name: str) -> Path:
    """The state directory of variant `name` (wiped by every start of it)."""
    return Path(f"/tmp/hpc-radr-slurm-{name}")


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def port_base(name: str) -> int:
    """The first of the four ports of variant `name`: a block chosen from the name (so each name has its own,
    the same from run to run), or the next free block when something listens on one of its ports."""
    first_block = zlib.crc32(name.encode()) % PORT_BLOCKS
    for i in range(PORT_BLOCKS):
        base = PORT_FIRST + PORTS_PER_CLUSTER * ((first_block + i) % PORT_BLOCKS)
        ports = range(base, base + PORTS_PER_CLUSTER)
        if any(p in DEFAULT_PORTS for p in ports):
            continue
        if not any(_port_in_use(p) for p in ports):
            return base
    raise SiteClusterError(f"no four free TCP ports on 127.0.0.1 in {PORT_FIRST}..{PORT_FIRST + 4 * PORT_BLOCKS - 1}")


def parse_env_file(path: Path) -> dict[str, str]:
    """The `export KEY=VALUE` lines of an env file written by `slurm-cluster start` (values quoted as the shell's
    printf %q does), read without a shell."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line.startswith("export "):
            continue
        key, sep, value = line[len("export "):].strip().partition("=")
        if not sep or not key.isidentifier():
            raise SiteClusterError(f"{path}: cannot parse line {raw!r}")
        words = shlex.split(value)
        if len(words) != 1:
            raise SiteClusterError(f"{path}: expected one value in line {raw!r}")
        values[key] = words[0]
    return values


def _script(command: str, flags: tuple[str, ...], script_env: dict[str, str], timeout: float
            ) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([str(SCRIPT), command, *flags], env=script_env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        raise SiteClusterError(f"`slurm-cluster {command} {' '.join(flags)}` did not finish in {timeout:.0f} s; "
                               f"stderr so far:\n{stderr}") from None


@contextmanager
def site_cluster(name: str, *flags: str) -> Iterator[dict[str, str]]:
    """Start variant `name` with `scripts/slurm-cluster start *flags`, yield the environment for talking to it,
    and always stop it afterwards.

    The variant lives in /tmp/hpc-radr-slurm-<name> (logs stay there after the stop) and listens on four ports
    of its own (see port_base); the default cluster and other variants keep running. Raises SiteClusterError
    with the script's stderr when the start fails (the script has then stopped what it had started)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"site cluster name {name!r}: use 1-31 characters out of a-z, 0-9 and '-'")
    base = port_base(name)
    script_env = dict(os.environ)
    script_env["HPC_RADR_SLURM_DIR"] = str(state_dir(name))
    script_env["HPC_RADR_SLURM_PORT_BASE"] = str(base)
    # The script sets SLURM_CONF itself; an inherited one must not leak into its client calls.
    script_env.pop("SLURM_CONF", None)

    where = f"HPC_RADR_SLURM_DIR={state_dir(name)} HPC_RADR_SLURM_PORT_BASE={base} {SCRIPT}"
    failed = True
    try:
        started = _script("start", flags, script_env, START_TIMEOUT_S)
        command = f"{where} start {' '.join(flags)}".rstrip()
        if started.returncode != 0:
            raise SiteClusterError(f"`{command}` failed (exit {started.returncode}); its stderr:\n"
                                   f"{started.stderr.rstrip()}")
        lines = started.stdout.strip().splitlines()
        if not lines or not Path(lines[-1]).is_file():
            raise SiteClusterError(f"`{command}` printed no env file as its last line; stdout:\n{started.stdout}"
                                   f"\nstderr:\n{started.stderr.rstrip()}")
        env = dict(script_env)
        env.update(parse_env_file(Path(lines[-1])))
        if "SLURM_CONF" not in env:
            raise SiteClusterError(f"{lines[-1]} does not export SLURM_CONF")
        yield env
        failed = False
    finally:
        try:
            stopped = _script("stop", (), script_env, STOP_TIMEOUT_S)
            if stopped.returncode != 0:
                raise SiteClusterError(f"`{where} stop` failed (exit {stopped.returncode}); its stderr:\n"
                                       f"{stopped.stderr.rstrip()}")
        except SiteClusterError as exc:
            if not failed:
                raise
            # Do not hide the error that is already on its way.
            warnings.warn(str(exc), stacklevel=3)
