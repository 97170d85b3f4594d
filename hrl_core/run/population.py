"""A population: P grid cells trained together in one process, as one computation.

Beside the single-run loop (``hrl_core.run.finetune.train``) and made of its parts: every cell
is opened, checked, locked, built, warm-started and restored exactly as a run alone
(:func:`~hrl_core.run.finetune.open_run`, :func:`~hrl_core.run.finetune.start_run`), then the
cells' agents are stacked into one (``hrl_core.rl.population.Stack``) and each online step is

1. one forward pass acting for every cell (each cell's noise from its own generator), one host
   transfer of the P actions and the ensemble's std(Q) / mean |Q| at them;
2. P environment steps in lockstep, each cell's explorer adding its bonus, each its own replay;
3. P hybrid batches (each cell's indices from its own generator), stacked; one update of the
   stacked agent (the algorithm's own ``update``), one fused optimizer step per network;
4. at each evaluation, the stack copied back into the cells' agents, and every cell evaluated,
   logged and snapshotted by the same function a run alone uses.

A cell stays a cell: its own folder, name, identity, config.json, metrics.json, snapshots,
checkpoint and lock, its own random streams (the states its run alone would have), so its
snapshot resumes alone or in another population. A cell that diverges or fails is recorded
as such and leaves; the others go on. Numbers agree with the same cell run alone to floating-
point rounding, as between thread counts (the stacked actor's GEMMs are other calls than
nn.Linear's); tests/test_population.py holds it to that tolerance.

Cells of one population share what keeps tensor shapes and the optimizer's step: algorithm
and its hyper-parameters, dataset shapes, ensemble size, batch size, online steps, evaluation
interval, the step they start at, and an explorer that acts with the policy's own sample
(:func:`key`). ``hrl grid --population P`` packs them (``hrl_core.lab.execute``).
"""

from __future__ import annotations

import contextlib
import random
import sys
from dataclasses import dataclass, field

import numpy as np
import torch

from hrl_core.errors import DivergenceError, HrlError
from hrl_core.rl.population import Stack, stackable
from hrl_core.run import files, folder
from hrl_core.run.config import FinetuneConfig
from hrl_core.run.finetune import (
    Opened,
    RunInterrupted,
    Started,
    _Signals,
    collect,
    evaluate_and_save,
    finish,
    interrupt,
    open_run,
    record_failure,
    start_run,
    train,
)
from hrl_core.run.folder import RunResult
from hrl_core.run.runtime import progress_bar


def key(cfg: FinetuneConfig) -> tuple:
    """What cells must share to train as one population (besides the step they start at)."""
    from hrl_core.rl import agents, explorers

    explorer = explorers.get(cfg.exploration) if cfg.bonus_type == "ensemble" else explorers.NoBonus
    hyper = tuple(sorted((k, v) for k, v in cfg.agent_settings(agents.get(cfg.algo)).items()))
    return (cfg.algo, cfg.env, cfg.n_ensemble, cfg.batch_size, cfg.online_steps, cfg.eval_interval, cfg.device,
            cfg.threads, explorer.poolable, hyper)  # fmt: skip


def poolable(cfg: FinetuneConfig) -> bool:
    """Whether a cell can be in a population at all (its explorer acts with the policy's sample)."""
    return bool(key(cfg)[8])


@dataclass
class Member:
    """One cell of a population: its run, under its lock."""

    opened: Opened
    lock: object
    started: Started
    generator: torch.Generator  # its torch stream (the default generator's state in its run alone)
    rng: dict  # its python / numpy states, kept in its snapshots as a run alone keeps them
    position: int
    result: RunResult | None = None
    error: BaseException | None = None
    log: list = field(default_factory=list)

    @property
    def cfg(self) -> FinetuneConfig:
        return self.opened.cfg

    @property
    def name(self) -> str:
        return self.cfg.run_name

    def rng_state(self) -> dict:
        """Its generator states as a run alone's snapshot keeps them."""
        if self.generator.device.type == "cuda":
            return {**self.rng, "cuda": [self.generator.get_state()]}
        return {**self.rng, "torch": self.generator.get_state()}


def _capture_rng(device: torch.device) -> tuple[torch.Generator, dict]:
    """The process's generator states right after a cell was built (and restored): its own streams.
    On a GPU a run alone draws from the device's default generator, so the cell's copy is of that."""
    np_state = np.random.get_state()
    rng = {"python": random.getstate(), "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
           "torch": torch.get_rng_state(), "cuda": None}  # fmt: skip
    if device.type == "cuda":
        gen = torch.Generator(device=device)
        gen.set_state(torch.cuda.get_rng_state(device))
    else:
        gen = torch.Generator()
        gen.set_state(rng["torch"])
    return gen, rng


def run_population(cfgs: list[FinetuneConfig], progress: bool = True, grid_cell: bool = False,
                   echo=print) -> list[RunResult | BaseException]:  # fmt: skip
    """Train these cells together; one result (or the error that stopped it) per cell, in order.

    A cell that is already complete, locked by another process or has bad input is reported as
    such and the others go on; cells starting at another step than the rest run after them (a
    population's cells share their optimizer's step count)."""
    from hrl_core.run.finetune import replay_need
    from hrl_core.run.runtime import check_memory

    results: list[RunResult | BaseException | None] = [None] * len(cfgs)
    openings = {}
    for i, cfg in enumerate(cfgs):  # every check of every cell before any folder is touched
        try:
            opened = open_run(cfg, False, grid_cell)
        except Exception as exc:  # noqa: BLE001 - one cell's bad input or lock stops that cell only
            results[i] = exc
            continue
        if isinstance(opened, RunResult):
            results[i] = opened
        else:
            openings[i] = opened
    if openings:  # the cells' replay buffers live in this one process
        first = next(iter(openings.values()))
        try:
            check_memory([replay_need(o.cfg) for o in openings.values()], first.device,
                         f"a population of {len(openings)} cells ")  # fmt: skip
        except HrlError as exc:
            for i in openings:
                results[i] = exc
            openings = {}
    with contextlib.ExitStack() as held:
        members = []
        for i, opened in openings.items():
            try:
                lock = held.enter_context(folder.take_folder(opened.run_dir))
                started = start_run(opened, lock)
                if isinstance(started, RunResult):
                    results[i] = started
                    continue
                held.callback(started.logger.close)
                gen, rng = _capture_rng(opened.device)
                members.append(Member(opened, lock, started, gen, rng, i))
            except Exception as exc:  # noqa: BLE001 - one cell's bad input or lock stops that cell only
                results[i] = exc
        by_step: dict[int, list[Member]] = {}
        for m in members:
            by_step.setdefault(m.started.state.step, []).append(m)
        for group in by_step.values():
            _train_group(group, progress, echo)
            for m in group:
                results[m.position] = m.result if m.result is not None else m.error
    return results


def _train_group(members: list[Member], progress: bool, echo) -> None:
    why = stackable([m.started.parts.agent for m in members])
    if why or len({key(m.cfg) for m in members}) > 1 or not all(poolable(m.cfg) for m in members):
        raise HrlError(f"these cells cannot share a population ({why or 'their settings differ'}); "
                       "pack cells with hrl_core.run.population.key")  # fmt: skip
    if len(members) == 1:  # a population of one is a run alone, with the run's own loop
        m = members[0]
        torch.set_rng_state(m.generator.get_state())
        try:
            m.result = train(m.cfg, m.opened.run_dir, m.started.parts, m.started.state, m.opened.ident, m.lock,
                             m.started.logger, progress)  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            m.error = exc
        return
    names = [m.name for m in members]
    for p, m in enumerate(members):
        config = m.started.config
        session = {"size": len(members), "position": p, "at_step": m.started.state.step, "cells": names}
        config["population"] = (config.get("population") or []) + [session]
        files.write_json(m.opened.run_dir / folder.CONFIG, config)
    loop = _Loop(members, progress, echo)
    try:
        loop.run()
    except RunInterrupted:
        raise
    except Exception as exc:  # noqa: BLE001 - what stopped them all (out of memory, ...) is each one's failure
        for m in loop.members:
            record_failure(m.opened.run_dir, m.started.state, exc, m.lock)
            m.error = exc


class _Loop:
    """The population's online loop (the single-run loop's steps, for P cells at once)."""

    def __init__(self, members: list[Member], progress: bool, echo):
        self.members = members
        self.progress, self.echo = progress, echo
        self.cfg = members[0].cfg  # shared: steps, interval, shapes (key())
        self.sums: dict[str, torch.Tensor] = {}
        self.updates = 0
        self.stack = None

    # -- membership ------------------------------------------------------------------
    def _restack(self) -> None:
        if self.stack is not None:
            self.stack.unstack_into()
        self.stack = Stack([m.started.parts.agent for m in self.members], [m.generator for m in self.members])

    def _drop(self, leaving: dict[int, BaseException]) -> None:
        """Cells that diverged or failed: recorded as a run alone records them; the others go on."""
        self.stack.unstack_into()
        keep = [p for p in range(len(self.members)) if p not in leaving]
        for p, exc in leaving.items():
            m = self.members[p]
            record_failure(m.opened.run_dir, m.started.state, exc, m.lock)
            m.error = exc
            self.echo(f"population: {m.name} stopped at step {m.started.state.step} ({exc}); the others go on",
                      file=sys.stderr)  # fmt: skip
            _close(m)
        self.members = [self.members[p] for p in keep]
        self.sums = {k: v[keep] for k, v in self.sums.items()}
        self.stack = None
        if self.members:
            self._restack()

    # -- the loop --------------------------------------------------------------------
    def run(self) -> None:
        bar = None
        try:
            with _Signals() as signals:
                for m in self.members:
                    m.started.parts.explorer.bind(m.started.parts.agent)
                self._evaluate(first=True)
                self._restack()
                step = self.members[0].started.state.step if self.members else 0
                desc = f"population of {len(self.members)} ({self.cfg.algo} {self.cfg.env})"
                bar = progress_bar(self.cfg.online_steps, desc, self.progress, initial=step)
                while self.members and step < self.cfg.online_steps:
                    self._act()
                    if not self.members:
                        break
                    self._update(step)
                    step += 1
                    for m in self.members:
                        m.started.state.step = step
                    bar.update(1)
                    self.members[0].started.parts.threads.maybe_adjust()
                    evaluated = step % self.cfg.eval_interval == 0 or step == self.cfg.online_steps
                    if evaluated:
                        self._evaluate()
                    if signals.received and self.members:
                        self._interrupt(signals.received, evaluated)
        finally:
            if bar is not None:
                bar.close()
            for m in self.members:
                _close(m)
        for m in self.members:
            try:
                m.result = finish(m.cfg, m.opened.run_dir, m.started.parts, m.started.state, m.lock,
                                  m.started.logger)  # fmt: skip
                m.result.replay, m.result.offline = m.started.parts.buffer, m.started.offline
            except Exception as exc:  # noqa: BLE001
                m.error = exc

    @torch.no_grad()
    def _act(self) -> None:
        """Act for every cell in one pass; step each cell's environment with its action."""
        agent = self.stack.agent
        obs = np.stack([m.started.state.obs for m in self.members])
        o = torch.as_tensor(obs, dtype=torch.float32, device=agent.device).unsqueeze(1)  # [P, 1, o]
        a = agent.actor.sample(o)[0]  # [P, 1, a]
        q = agent.critic(o, a)[..., 0]  # [P, N]
        # each cell's std and mean |Q| reduced as its run alone reduces them (one [N] vector each)
        stats = torch.stack([torch.stack([q[p].std(), q[p].abs().mean()]) for p in range(q.shape[0])])  # [P, 2]
        host = torch.cat([a[:, 0], stats], -1).cpu().numpy()  # one transfer: [P, a + 2]
        act_dim = a.shape[-1]
        leaving = {}
        for p, m in enumerate(self.members):
            parts = m.started.parts
            parts.explorer.measured(float(host[p, act_dim]), float(host[p, act_dim + 1]))
            try:
                collect(m.cfg, parts, m.started.state, host[p, :act_dim].copy())
            except Exception as exc:  # noqa: BLE001 - this cell stops; the others go on
                leaving[p] = exc
        if leaving:
            self._drop(leaving)

    def _update(self, step: int) -> None:
        batches = [m.started.parts.sampler.sample(m.generator) for m in self.members]
        batch = {k: torch.stack([b[k] for b in batches]) for k in batches[0]}  # [P, B, ...]
        info = self.stack.agent.update(batch)
        for k, v in info.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.updates += 1
        # One host sync for every cell's divergence guard.
        flags = torch.stack([torch.isfinite(v).reshape(len(self.members), -1).all(dim=1) for v in info.values()])
        if not bool(flags.all()):
            bad = (~flags).any(dim=0).nonzero().flatten().tolist()
            names = list(info)
            leaving = {}
            for p in bad:
                what = ", ".join(n for n, f in zip(names, flags[:, p].tolist(), strict=True) if not f)
                leaving[p] = DivergenceError(step + 1, what, self.members[p].cfg.bonus_type == "ensemble")
            self._drop(leaving)

    def _evaluate(self, first: bool = False) -> None:
        """Every cell evaluated, logged and snapshotted as a run alone is (step 0: only fresh cells)."""
        if self.stack is not None:
            self.stack.unstack_into()
        leaving = {}
        for p, m in enumerate(self.members):
            state = m.started.state
            if first and (state.step != 0 or state.metrics["step"]):
                continue
            if not first:
                state.window.sums = {k: v[p].clone() for k, v in self.sums.items()}
                state.window.updates = self.updates
            try:
                evaluate_and_save(m.cfg, m.opened.run_dir, m.started.parts, state, m.opened.ident, m.lock,
                                  m.started.logger, rng=m.rng_state(), prefix=f"{m.name}: ")  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - a cell whose folder failed stops alone
                leaving[p] = exc
        if not first:
            self.sums, self.updates = {}, 0
        if leaving and self.stack is not None:
            self._drop(leaving)
        elif leaving:
            for p, exc in leaving.items():
                self.members[p].error = exc
                record_failure(self.members[p].opened.run_dir, self.members[p].started.state, exc,
                               self.members[p].lock)  # fmt: skip
            self.members = [m for p, m in enumerate(self.members) if p not in leaving]

    def _interrupt(self, signal_name: str, evaluated: bool) -> None:
        self.stack.unstack_into()
        error = None
        for p, m in enumerate(self.members):
            if not evaluated:
                m.started.state.window.sums = {k: v[p].clone() for k, v in self.sums.items()}
                m.started.state.window.updates = self.updates
            error = interrupt(m.opened.run_dir, m.started.parts, m.started.state, m.opened.ident, m.lock,
                              signal_name, evaluated, m.rng_state())  # fmt: skip
            m.error = error
        raise RunInterrupted(
            f"{signal_name} received: snapshots written at step {self.members[0].started.state.step} for "
            f"{len(self.members)} cells; run the same command again to resume"
        ) from error


def _close(m: Member) -> None:
    m.started.parts.evaluator.close()
    m.started.parts.env.close()
