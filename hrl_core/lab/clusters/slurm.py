"""Workers as Slurm jobs (dask-jobqueue's SLURMCluster), for ``hrl grid --cluster slurm``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hrl_core.errors import HrlError
from hrl_core.lab.clusters import propagated_env


@dataclass
class SlurmOptions:
    """What a cluster user sets for ``hrl grid --cluster slurm`` (dask-jobqueue SLURMCluster)."""

    partition: str | None = None  # Slurm partition (queue); None: the cluster's default
    walltime: str = "24:00:00"  # per job; a cell cut by it resumes in the next job from its snapshot
    cores: int = 2  # CPU cores per job
    memory: str = "8GB"  # memory per job
    gpus_per_job: int = 0  # 0: CPU jobs (one cell per core); 1: one GPU per job shared by cells_per_gpu cells
    jobs: int = 4  # jobs at once
    job_extra: tuple = ()  # extra #SBATCH lines, e.g. ("--account=myproj", "--qos=long")
    cells_per_gpu: int = 1  # concurrent cells on a job's GPU
    log_dir: str = "slurm-logs"  # the jobs' stdout/stderr

    @property
    def cells_per_job(self) -> int:
        return self.cells_per_gpu if self.gpus_per_job else self.cores

    @property
    def threads_per_cell(self) -> int:
        return max(1, self.cores // self.cells_per_job)

    def describe(self) -> str:
        where = f"partition {self.partition}" if self.partition else "the default partition"
        gpu = f", {self.gpus_per_job} GPU ({self.cells_per_gpu} cell(s) on it)" if self.gpus_per_job else ""
        return (f"slurm: up to {self.jobs} job(s) at once on {where}, each {self.cores} cores, {self.memory}{gpu}, "
                f"walltime {self.walltime}; {self.cells_per_job} cell(s) per job, {self.threads_per_cell} torch "
                f"thread(s) per cell")  # fmt: skip


def slurm_cluster(opts: SlurmOptions):
    """A dask-jobqueue SLURMCluster for the grid, scaled to ``opts.jobs`` jobs.

    Each job runs one Dask worker with one thread per concurrent cell (cells run in their
    own kernel processes). At walltime or preemption Slurm sends SIGTERM to every process
    of the job and SIGKILL ``KillWait`` seconds later (30 s by default): a running cell
    writes a snapshot on SIGTERM, and the grid (or its re-run) resumes it in another job.
    """
    import sys

    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise HrlError("--cluster slurm needs dask-jobqueue: pip install 'hrl[slurm]'") from None
    exports = {**propagated_env(), "OMP_NUM_THREADS": str(opts.threads_per_cell)}
    directives = list(opts.job_extra)
    if opts.gpus_per_job:
        directives.append(f"--gres=gpu:{opts.gpus_per_job}")
    Path(opts.log_dir).mkdir(parents=True, exist_ok=True)
    cluster = SLURMCluster(
        queue=opts.partition,
        cores=opts.cells_per_job,  # worker threads = concurrent cells
        job_cpu=opts.cores,
        processes=1,
        memory=opts.memory,
        walltime=opts.walltime,
        job_extra_directives=directives,
        job_script_prologue=[f"export {k}={v}" for k, v in exports.items()],
        python=sys.executable,
        log_directory=opts.log_dir,
        scheduler_options={"dashboard_address": None},
    )
    cluster.scale(jobs=opts.jobs)
    return cluster


class SlurmBackend:
    """Cells in Slurm jobs; the jobs' cells pin ``threads_per_cell`` torch threads each."""

    def __init__(self, opts: SlurmOptions):
        self.opts = opts
        self.cell_threads = opts.threads_per_cell

    def describe(self) -> str:
        return self.opts.describe()

    def concurrent_cells(self) -> int:
        return self.opts.jobs * self.opts.cells_per_job

    def open(self):
        from hrl_core.lab.clusters import client_of

        return client_of(slurm_cluster(self.opts))
