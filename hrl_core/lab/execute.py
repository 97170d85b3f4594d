"""Executing a grid's cells: one papermill-run notebook per cell, as tasks on a back-end.

Every cell executes its notebook (``notebooks/finetune.ipynb``, or ``pretrain.ipynb``
for Phase I grids) into ``<executed_dir>/<run_name>.ipynb`` (the injected parameters stay
in the notebook). Complete cells are skipped, unfinished ones resume, a cell another
process runs is left alone, and a complete run whose record is damaged is reported, not
run again.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from pathlib import Path

from hrl_core.lab.grids import RUNNING_ELSEWHERE, SKIPPED, Cell, Kind, cell_status, format_duration
from hrl_core.run.config import FinetuneConfig


def notebook_parameters(cfg) -> dict:
    """Config -> the notebook's parameters: its fields as they are (papermill writes None as None)."""
    from dataclasses import asdict

    params = asdict(cfg)
    params["progress"] = False  # papermill output stays readable; the grid shows progress
    if isinstance(cfg, FinetuneConfig):
        params["grid_cell"] = True  # finished meanwhile by another process: skip, do not re-record
    return params


def partial_path(output: Path, host: str | None = None, pid: int | None = None) -> Path:
    """The hidden file a cell's notebook is executed into: one per executing process."""
    host, pid = host or socket.gethostname(), pid or os.getpid()
    return output.with_name(f".{output.stem}.{host}-{pid}.partial.ipynb")


def _remove_stale_partials(output: Path, before: float) -> None:
    """Partial notebooks of this cell left by killed executions (older than this one)."""
    for stale in output.parent.glob(f".{output.stem}.*.partial.ipynb"):
        try:
            if stale.stat().st_mtime < before:
                stale.unlink()
        except FileNotFoundError:  # its owner removed it meanwhile
            pass


def _portable_metadata(notebook: Path, output: Path) -> None:
    """papermill records the input and output paths in the notebook's metadata; an executed record
    names them relative to the repository (a record made on one machine reads the same on another),
    the output as the file it becomes (not the partial file it was executed into)."""
    import json

    from hrl_core.lab.record import shown

    try:
        nb = json.loads(notebook.read_text())
    except (OSError, ValueError):
        return
    meta = nb.get("metadata", {}).get("papermill", {})
    if meta.get("input_path"):
        meta["input_path"] = shown(meta["input_path"])
    if meta.get("output_path"):
        meta["output_path"] = shown(output)
    notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


KERNEL_START_ATTEMPTS = 3  # a kernel that dies before running any cell is started again


def _nothing_ran(partial: Path) -> bool:
    """True when papermill ran none of the notebook's cells (e.g. its kernel died at start:
    two kernels started at once on one host can pick the same free TCP port)."""
    import json

    try:
        cells = json.loads(partial.read_text()).get("cells", [])
    except (OSError, ValueError):
        return True  # not even written: nothing ran
    # papermill marks every cell "completed" when it ends, even unrun ones: a cell ran iff it has a start time
    return all(c.get("metadata", {}).get("papermill", {}).get("start_time") is None for c in cells)


def execute_cell(notebook: str, output: str, parameters: dict, env: dict, run_name: str = "",
                 kernel_name: str = "python3") -> dict:  # fmt: skip
    """Run one cell's notebook with papermill (in a Dask worker). Never raises.

    Returns ``{"status", "run_name", "notebook", "seconds", "error", "kernel_starts"}``.
    The notebook is executed into a hidden partial file of its own (host and PID in the
    name: two grids may start the same cell at once, and one of them then finds the run
    locked) and moved to ``output`` when it ends, so a cell that finds its run held by
    another process leaves that process's notebook alone; a failed cell keeps its
    executed notebook with the error in it. A kernel that fails before the notebook's
    first cell ran is started again (up to ``KERNEL_START_ATTEMPTS`` times): nothing of
    the run happened yet, so this cannot change a result.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    os.environ.update(env)
    t0 = time.time()
    result = {"run_name": run_name, "notebook": output, "error": None, "kernel_starts": 0}
    partial = partial_path(Path(output))
    try:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        while True:
            result["kernel_starts"] += 1
            try:
                papermill.execute_notebook(
                    notebook,
                    str(partial),
                    parameters=parameters,
                    cwd=str(Path(notebook).parent),
                    progress_bar=False,
                    log_output=False,
                    kernel_name=kernel_name,
                    # the kernel's own log, not the notebook's errors (those end in the executed notebook
                    # and PapermillExecutionError): its TCP-without-encryption warning on every start and
                    # the "ERROR | KeyboardInterrupt caught in kernel" it logs when jupyter_client interrupts
                    # it on a normal shutdown are noise that reads as a failure
                    extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
                )
                break
            except PapermillExecutionError:
                raise
            except Exception:  # noqa: BLE001 - retried only when no cell ran
                if result["kernel_starts"] >= KERNEL_START_ATTEMPTS or not _nothing_ran(partial):
                    raise
                time.sleep(1.0 + (os.getpid() % 7) / 3)  # two grids retrying do not meet again
        result["status"] = "complete"
    except PapermillExecutionError as exc:
        result["status"] = {"RunLocked": RUNNING_ELSEWHERE, "AlreadyComplete": SKIPPED}.get(exc.ename, "failed")
        result["error"] = f"{exc.ename}: {str(exc.evalue).strip().splitlines()[0][:300]}" if exc.evalue else exc.ename
    except Exception as exc:  # noqa: BLE001 - a failed cell must not stop the grid
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        result["status"] = "failed"
        result["error"] = lines[-1][:300] if lines else exc.__class__.__name__
        if result["kernel_starts"] > 1:
            result["error"] += f" (kernel started {result['kernel_starts']} times)"
    finally:
        try:
            if result.get("status") in (RUNNING_ELSEWHERE, SKIPPED):  # another process's record stays
                partial.unlink(missing_ok=True)
                result["notebook"] = None
            elif partial.exists():
                _portable_metadata(partial, Path(output))
                os.replace(partial, output)
                _remove_stale_partials(Path(output), t0)
        except OSError as exc:  # e.g. a full disk: the run's own folder holds its results
            result["error"] = (result.get("error") or "") + f"; executed notebook not kept ({exc})"
    result["seconds"] = time.time() - t0
    return result


# --------------------------------------------------------------------------------------
# Populations: several cells trained as one computation in one worker (hrl_core.run.population)
# --------------------------------------------------------------------------------------
POPULATION_PER_GPU = 32  # on a GPU: the stacked update of 32 cells still leaves most of an H100 idle
# A population is chosen on a CPU only where it saves at least this much per cell-step. `hrl bench`'s
# medians move by a few percent between runs, and a population is not free: CQL's cells in one match
# their solo runs only within rounding (its log-sum-exp reduces in another order). CQL's measured
# 0.98 at P = 2 is noise, not a saving, so CQL runs alone (docs/performance.md).
POPULATION_MIN_SAVING = 0.05


def auto_population(algo: str, n_gpus: int) -> int:
    """Cells per population when the user does not say: on a GPU many; on a CPU the size the
    algorithm's measured ``population_cost`` says is cheapest per cell-step, if it saves at least
    ``POPULATION_MIN_SAVING`` (else 1: each cell alone)."""
    from hrl_core.rl import agents

    if n_gpus:
        return POPULATION_PER_GPU
    costs = {1: 1.0, **(agents.get(algo).population_cost or {})}
    best = min(costs, key=lambda size: (costs[size], size))
    return best if costs[best] <= 1.0 - POPULATION_MIN_SAVING else 1


def start_step(cell: Cell) -> int:
    """The online step an unfinished cell resumes from (0: new), from its metrics.json."""
    from hrl_core.run import files

    try:
        metrics = files.read_json(cell.run_dir / "metrics.json")
    except (OSError, ValueError):
        return 0
    if not isinstance(metrics, dict):
        return 0
    if metrics.get("interrupted_at_step") is not None:
        return int(metrics["interrupted_at_step"])
    steps = metrics.get("step") or [0]
    return int(steps[-1])


def pack(cells: list[Cell], size, workers: int = 1) -> list[list[Cell]]:
    """Cells grouped into populations of at most ``size`` (an int, or a function of a cell's
    algorithm; 1: each alone, as always): only cells that share what a population needs
    (``hrl_core.run.population.key``, the step they start at) share one; a group is split
    evenly (sizes differing by at most one) so that ``workers`` workers all get work, and all
    populations together are a multiple of the workers where the cells allow it."""
    from hrl_core.run.config import FinetuneConfig
    from hrl_core.run.population import key, poolable

    size_of = size if callable(size) else (lambda algo: size)
    groups: dict[tuple, list[Cell]] = {}
    singles = []
    for c in cells:
        if not isinstance(c.config, FinetuneConfig) or not poolable(c.config) or size_of(c.config.algo) <= 1:
            singles.append([c])
            continue
        groups.setdefault((key(c.config), start_step(c)), []).append(c)
    keyed = list(groups.values())
    total = sum(len(g) for g in keyed)
    counts = []  # populations per group
    for group in keyed:
        size = size_of(group[0].config.algo)
        # as many populations as the size asks, and at least this group's share of the workers
        share = max(1, round(workers * len(group) / max(total, 1)))
        n = max(-(-len(group) // size), min(share, len(group)))
        counts.append(min(len(group), -(-n // share) * share))  # a multiple of its workers' share
    # All populations together a multiple of the workers where the cells allow it: a last wave of fewer
    # populations than workers leaves a worker idle for a whole population's length (the review study's
    # 24 + 64 IQL cells at 8 made 11 populations, 6 lengths on 2 workers; 12 smaller ones take ~5.6).
    # Split again the group whose populations are largest (on a tie, the one with more cells).
    while workers > 1 and sum(counts) % workers:
        can = [i for i, g in enumerate(keyed) if counts[i] < len(g)]
        if not can:
            break
        i = max(can, key=lambda j: (len(keyed[j]) / counts[j], len(keyed[j])))
        counts[i] += 1
    out = []
    for group, n in zip(keyed, counts, strict=True):
        q, r = divmod(len(group), n)  # n populations whose sizes differ by at most one
        start = 0
        for j in range(n):
            out.append(group[start : start + q + (j < r)])
            start += q + (j < r)
    return out + singles


def execute_population(notebook: str, cells: list[tuple[dict, str, str]], env: dict,
                       kernel_name: str = "python3") -> list[dict]:  # fmt: skip
    """Train P cells as one population in this worker, then execute each finished cell's notebook
    over its run (in a Dask worker; never raises).

    ``cells``: (settings, executed notebook path, run name) per cell. Each cell keeps its own
    executed notebook: once its run is complete, the notebook runs as it does for a run alone and
    finds the run complete, so the record shows the run's curves and summary (not the training
    log, which the population wrote once for all its cells). Training first and rendering after
    keeps one notebook per cell without P kernels each driving a part of one computation."""
    from hrl_core.errors import AlreadyComplete
    from hrl_core.run.lock import RunLocked
    from hrl_core.run.population import run_population

    os.environ.update(env)
    t0 = time.time()
    try:
        cfgs = [FinetuneConfig(**settings) for settings, _, _ in cells]
        outcomes = run_population(cfgs, progress=False, grid_cell=True)
    except Exception as exc:  # noqa: BLE001 - the whole population failed to start: each cell says so
        outcomes = [exc] * len(cells)
    results = []
    for (settings, out, run_name), outcome in zip(cells, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            status = {RunLocked: RUNNING_ELSEWHERE, AlreadyComplete: SKIPPED}.get(type(outcome), "failed")
            results.append({"run_name": run_name, "status": status, "notebook": None,
                            "error": f"{outcome.__class__.__name__}: {str(outcome).splitlines()[0][:300]}",
                            "seconds": time.time() - t0})  # fmt: skip
            continue
        params = {**settings, "progress": False, "grid_cell": False}  # renders the complete run
        res = execute_cell(notebook, out, params, {}, run_name, kernel_name)
        res["population"] = len(cells)
        res["seconds"] = time.time() - t0  # the population's training and this cell's record
        results.append(res)
    return results


def run_grid(cells: list[Cell], backend=None, executed_dir: Path = Path("executed"), progress: bool = True,
             notebook: Path | None = None, population=1) -> list[dict]:  # fmt: skip
    """Execute the cells on a back-end (``hrl_core.lab.clusters``; default: this machine);
    returns one result dict per cell (skipped ones too). ``notebook`` replaces the cells' own.
    ``population``: cells per population (``hrl_core.run.population``; 1: each cell alone), or a
    function of a cell's algorithm giving it."""

    from hrl_core.lab import clusters

    todo, results, trains = [], [], {}
    for cell in cells:
        status = cell_status(cell, allow_download=True)
        if status.executes:  # trains, or records at once why it cannot (its notebook keeps the error)
            todo.append(cell)
            trains[cell.run_name] = status.runs
        elif status.kind is Kind.COMPLETE:
            results.append({"run_name": cell.run_name, "status": SKIPPED, "notebook": None})
        elif status.kind is Kind.IN_RECORD:
            results.append({"run_name": cell.run_name, "status": f"{SKIPPED[:-1]} in the committed record)",
                            "notebook": None})  # fmt: skip
        elif status.kind is Kind.RUNNING_ELSEWHERE:
            results.append({"run_name": cell.run_name, "status": RUNNING_ELSEWHERE, "notebook": None,
                            "error": status.split(": ", 1)[1]})  # fmt: skip
        else:  # a complete run's damaged record: never silently recomputed
            results.append({"run_name": cell.run_name, "status": "failed", "notebook": None, "error": str(status)})
    if not todo:
        return results
    backend = backend or clusters.backend()
    env = clusters.propagated_env()
    for cell in todo:
        cfg = cell.config
        if getattr(cfg, "threads", 0) is None and backend.cell_threads is not None:
            cfg.threads = backend.cell_threads  # the workers' environment does not set them
        cell.notebook_out = Path(executed_dir) / f"{cell.run_name}.ipynb"
    with clusters.executor(backend) as ex:
        futures = {}
        training = [c for c in todo if trains[c.run_name]]
        groups = pack(training, population, backend.concurrent_cells())
        for group in groups + [[c] for c in todo if not trains[c.run_name]]:
            if len(group) == 1:
                cell = group[0]
                fut = ex.submit(
                    execute_cell,
                    str(notebook or cell.notebook),
                    str(cell.notebook_out),
                    notebook_parameters(cell.config),
                    env,
                    cell.run_name,
                    key=f"cell-{cell.run_name}",
                )
            else:
                from dataclasses import asdict

                members = [(asdict(c.config), str(c.notebook_out), c.run_name) for c in group]
                fut = ex.submit(
                    execute_population,
                    str(notebook or group[0].notebook),
                    members,
                    env,
                    key=f"population-{group[0].run_name}",
                )
            futures[fut] = group
        watch = Progress(todo, progress)
        pending = set(futures)
        while pending:
            done, pending = ex.wait(pending, timeout=watch.every)
            for fut in done:
                group = futures[fut]
                try:
                    out = fut.result()
                    out = out if isinstance(out, list) else [out]
                except Exception as exc:  # noqa: BLE001 - a worker lost (e.g. its Slurm job ended)
                    error = f"worker lost ({exc.__class__.__name__}); run the grid again to resume the cell"
                    out = [{"run_name": c.run_name, "status": "failed", "notebook": str(c.notebook_out),
                            "error": error} for c in group]  # fmt: skip
                for res in out:
                    results.append(res)
                    watch.finished(res)
            watch.tick()
        watch.close()
    return results


class Progress:
    """What a running grid says: cells done / total, the online (or gradient) steps per second the
    cells are making, an ETA from that measured rate, a line per finished cell. In a terminal a
    progress bar; otherwise (a log, a notebook, CI) a plain line every ``every`` seconds. Steps are
    read from the running cells' metrics.json (written at each evaluation), so they move in steps of
    an evaluation interval."""

    def __init__(self, cells: list[Cell], enabled: bool = True, every: float | None = None):
        from tqdm.auto import tqdm

        self.cells, self.enabled = cells, enabled
        self.tty = sys.stderr.isatty()
        self.every = every or (2.0 if self.tty else float(os.environ.get("HRL_PROGRESS_SECONDS", 30)))
        self.total_steps = sum(c.steps for c in cells)
        self.start_steps = sum(self._steps(c) for c in cells)  # resumed cells start where they were
        self.t0 = time.time()
        self.done: dict[str, str] = {}
        self._last_line = 0.0
        self.bar = tqdm(total=len(cells), desc="grid", unit="cell", disable=not (enabled and self.tty))

    @staticmethod
    def _steps(cell: Cell) -> int:
        from hrl_core.run import files

        try:
            metrics = files.read_json(cell.run_dir / "metrics.json")
            return int(max(metrics.get("step") or [0]))
        except (OSError, ValueError, TypeError):
            return 0

    def _state(self) -> tuple[int, float, float]:
        steps = sum(c.steps if self.done.get(c.run_name) == "complete" else self._steps(c) for c in self.cells)
        made = max(steps - self.start_steps, 0)
        elapsed = max(time.time() - self.t0, 1e-9)
        rate = made / elapsed
        eta = (self.total_steps - steps) / rate if rate > 0 else math.nan
        return steps, rate, eta

    def text(self) -> str:
        steps, rate, eta = self._state()
        eta_text = format_duration(eta) if math.isfinite(eta) else "— (no evaluation point yet)"
        return (f"{len(self.done)}/{len(self.cells)} cells done, {steps:,}/{self.total_steps:,} steps, "
                f"{rate:,.0f} steps/s, ETA {eta_text}")  # fmt: skip

    def finished(self, res: dict) -> None:
        self.done[res["run_name"]] = res["status"]
        if not self.enabled:
            return
        seconds = res.get("seconds")
        line = f"grid: {res['status']}: {res['run_name']}" + (f" ({seconds:.0f} s)" if seconds else "")
        if self.tty:
            self.bar.write(line)
            self.bar.update(1)
        else:
            print(line, flush=True)

    def tick(self) -> None:
        if not self.enabled:
            return
        if self.tty:
            steps, rate, eta = self._state()
            self.bar.set_postfix_str(f"{rate:,.0f} steps/s, ETA {format_duration(eta) if math.isfinite(eta) else '—'}")
        elif time.time() - self._last_line >= self.every:
            self._last_line = time.time()
            print(f"grid: {self.text()}", flush=True)

    def close(self) -> None:
        self.bar.close()
        if self.enabled:
            print(f"grid: {self.text()} (in {format_duration(time.time() - self.t0)})", flush=True)


def print_results(results: list[dict], out=sys.stdout) -> int:
    """Summary lines; returns the number of failed cells (cells running elsewhere are not failures)."""
    failed = [r for r in results if r["status"] == "failed"]
    ran = [r for r in results if r["status"] == "complete"]
    skipped = [r for r in results if r["status"].startswith("skipped")]
    elsewhere = [r for r in results if r["status"] == RUNNING_ELSEWHERE]
    print(
        f"grid: {len(ran)} ran, {len(skipped)} skipped (already complete), {len(elsewhere)} running elsewhere, "
        f"{len(failed)} failed",
        file=out,
    )
    for r in elsewhere:
        print(f"  ELSEWHERE {r['run_name']}: {r.get('error')}", file=out)
    for r in failed:
        print(f"  FAILED {r['run_name']}: {r['error']}\n         notebook: {r['notebook']}", file=out)
    return len(failed)
