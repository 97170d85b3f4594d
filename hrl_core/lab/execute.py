"""Executing a grid's cells: one papermill-run notebook per cell, as tasks on a back-end.

Every cell executes its notebook (``notebooks/finetune.ipynb``, or ``pretrain.ipynb``
for Phase I grids) into ``<executed_dir>/<run_name>.ipynb`` (the injected parameters stay
in the notebook). Complete cells are skipped, unfinished ones resume, a cell another
process runs is left alone, and a complete run whose record is damaged is reported, not
run again.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

from hrl_core.lab.grids import DAMAGED, IN_RECORD, RUNNING_ELSEWHERE, SKIPPED, Cell, cell_status, format_duration
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
                    # the kernel's own log: its TCP-without-encryption warning on every start is noise here
                    extra_arguments=["--IPKernelApp.log_level=ERROR"],
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
                os.replace(partial, output)
                _remove_stale_partials(Path(output), t0)
        except OSError as exc:  # e.g. a full disk: the run's own folder holds its results
            result["error"] = (result.get("error") or "") + f"; executed notebook not kept ({exc})"
    result["seconds"] = time.time() - t0
    return result


def run_grid(cells: list[Cell], backend=None, executed_dir: Path = Path("executed"), progress: bool = True,
             notebook: Path | None = None) -> list[dict]:  # fmt: skip
    """Execute the cells on a back-end (``hrl_core.lab.clusters``; default: this machine);
    returns one result dict per cell (skipped ones too). ``notebook`` replaces the cells' own."""
    from dask.distributed import as_completed
    from tqdm.auto import tqdm

    from hrl_core.lab import clusters

    todo, results = [], []
    for cell in cells:
        status = cell_status(cell, allow_download=True)
        if status == "complete":
            results.append({"run_name": cell.run_name, "status": SKIPPED, "notebook": None})
        elif status.startswith(IN_RECORD):
            results.append({"run_name": cell.run_name, "status": f"{SKIPPED[:-1]} in the committed record)",
                            "notebook": None})  # fmt: skip
        elif status.startswith(DAMAGED):  # a complete run's damaged record: never silently recomputed
            results.append({"run_name": cell.run_name, "status": "failed", "notebook": None,
                            "error": status})  # fmt: skip
        elif status.startswith(RUNNING_ELSEWHERE):
            results.append({"run_name": cell.run_name, "status": RUNNING_ELSEWHERE, "notebook": None,
                            "error": status.split(": ", 1)[1]})  # fmt: skip
        else:
            todo.append(cell)
    if not todo:
        return results
    backend = backend or clusters.backend()
    env = clusters.propagated_env()
    with backend.open() as client:
        futures = {}
        for cell in todo:
            cfg = cell.config
            if getattr(cfg, "threads", 0) is None and backend.cell_threads is not None:
                cfg.threads = backend.cell_threads  # the workers' environment does not set them
            params = notebook_parameters(cfg)
            out = Path(executed_dir) / f"{cell.run_name}.ipynb"
            cell.notebook_out = out
            fut = client.submit(
                execute_cell,
                str(notebook or cell.notebook),
                str(out),
                params,
                env,
                cell.run_name,
                key=f"cell-{cell.run_name}",
                pure=False,
                retries=0,
            )
            futures[fut] = cell
        bar = tqdm(total=len(todo), desc="grid", unit="cell", disable=not progress)
        counts = {"complete": 0, "failed": 0, RUNNING_ELSEWHERE: 0}
        t0 = time.time()
        for fut in as_completed(futures):
            try:
                res = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker lost (e.g. its Slurm job ended)
                cell = futures[fut]
                error = f"worker lost ({exc.__class__.__name__}); run the grid again to resume the cell"
                res = {"run_name": cell.run_name, "status": "failed", "notebook": str(cell.notebook_out)}
                res["error"] = error
            results.append(res)
            counts[res["status"]] = counts.get(res["status"], 0) + 1
            finished = sum(counts.values())
            eta = (time.time() - t0) / finished * (len(todo) - finished)
            bar.set_postfix(done=counts["complete"], failed=counts["failed"], elsewhere=counts[RUNNING_ELSEWHERE],
                            eta=format_duration(eta), refresh=False)  # fmt: skip
            bar.update(1)
        bar.close()
    return results


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
