"""A real single-node Slurm for tests: munged, slurmctld and slurmd started from a temp dir.

Debian's ``slurm-wlm`` and ``munge`` packages run here without systemd: munged as the
munge user, ``ProctrackType=proctrack/linuxproc``, ``TaskPlugin=task/none``, no cgroups,
the node's CPUs and memory from ``slurmd -C``, controller and node on 127.0.0.1. The
daemons are stopped by PID. :func:`start` raises ``Unavailable`` with the reason when
Slurm is not installed or does not come up, so tests can skip with it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


class Unavailable(Exception):
    """Slurm cannot be used on this machine (the message says why)."""


@dataclass
class Slurm:
    root: Path
    conf: Path
    procs: list = field(default_factory=list)
    munged_pid: int | None = None

    @property
    def env(self) -> dict:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=60)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def jobs(self) -> list[dict]:
        """Running and pending jobs: id, name, state."""
        lines = self.run("squeue", "--noheader", "--format=%i|%j|%T").strip().splitlines()
        return [dict(zip(("id", "name", "state"), ln.split("|"), strict=True)) for ln in lines if ln]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.munged_pid:
            try:
                os.kill(self.munged_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def _node_line() -> str:
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("NodeName=")), None)
    if line is None:
        raise Unavailable(f"slurmd -C printed no node line: {out.strip()[:200]}")
    parts = dict(p.split("=", 1) for p in line.split() if "=" in p)
    mem = int(parts.get("RealMemory", "1000")) * 9 // 10
    return (f"NodeName={socket.gethostname()} NodeAddr=127.0.0.1 CPUs={parts['CPUs']} "
            f"RealMemory={mem} State=UNKNOWN")  # fmt: skip


def start(root: Path, timeout: float = 60.0) -> Slurm:
    """Start munged (if not running), slurmctld and slurmd; return when the node is idle."""
    for exe in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel"):
        if shutil.which(exe) is None:
            raise Unavailable(f"{exe} not found: install Debian's slurm-wlm and munge (.ci/run does)")
    if os.geteuid() != 0:
        raise Unavailable("starting slurmctld/slurmd here needs root")
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir(exist_ok=True)
    conf = root / "slurm.conf"
    conf.write_text(
        "\n".join([
            "ClusterName=hrltest",
            "SlurmctldHost=localhost(127.0.0.1)",
            "SlurmUser=root",
            "AuthType=auth/munge",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "SchedulerType=sched/backfill",
            "ReturnToService=2",
            "KillWait=30",
            "MpiDefault=none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
            "SlurmctldPort=16817",
            "SlurmdPort=16818",
            _node_line(),
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
            "",
        ])
    )  # fmt: skip
    slurm = Slurm(root, conf)
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode != 0:
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        out = subprocess.run(["runuser", "-u", "munge", "--", "munged"], capture_output=True, text=True)
        if out.returncode != 0:
            raise Unavailable(f"munged did not start: {out.stderr.strip()[:200]}")
        pid = subprocess.run(["pgrep", "-x", "munged"], capture_output=True, text=True).stdout.split()
        slurm.munged_pid = int(pid[0]) if pid else None
    env = slurm.env
    for daemon in ("slurmctld", "slurmd"):
        log = open(root / "log" / f"{daemon}.out", "w")
        slurm.procs.append(subprocess.Popen([daemon, "-D", "-f", str(conf)], env=env, stdout=log, stderr=log))
        time.sleep(1.0)
    deadline = time.time() + timeout
    state = ""
    while time.time() < deadline:
        if any(p.poll() is not None for p in slurm.procs):
            slurm.stop()
            logs = " | ".join((root / "log" / f"{d}.out").read_text()[-300:] for d in ("slurmctld", "slurmd"))
            raise Unavailable(f"a Slurm daemon exited: {logs}")
        out = subprocess.run(["sinfo", "--noheader", "--format=%T"], env=env, capture_output=True, text=True)
        state = out.stdout.strip()
        if state.startswith("idle"):
            return slurm
        time.sleep(0.5)
    slurm.stop()
    raise Unavailable(f"the Slurm node did not become idle within {timeout:.0f} s (state {state!r})")
