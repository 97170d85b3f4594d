"""One declaration per setting: the CLI, the notebook and the agent read FinetuneConfig."""

from __future__ import annotations

import ast
from dataclasses import MISSING, fields

import pytest

from hrl_core.cli import build_parser
from hrl_core.errors import HrlError
from hrl_core.lab import workbook
from hrl_core.rl.agents import CQLConfig, IQLConfig
from hrl_core.run.config import CELL_KEYS, QUICK, FinetuneConfig, field_choices, field_help


def _defaults(cls) -> dict:
    return {f.name: (f.default_factory() if f.default is MISSING else f.default) for f in fields(cls)}


def test_every_setting_has_a_help_text():
    helps = field_help()
    assert set(helps) == {f.name for f in fields(FinetuneConfig)}
    assert all(len(text) > 10 for text in helps.values()), {k: v for k, v in helps.items() if len(v) <= 10}


def test_the_notebook_parameters_cell_is_the_config():
    """papermill reads the same names and defaults the dataclass declares (drift fails here)."""
    import papermill

    params = papermill.inspect_notebook(str(workbook.FINETUNE_NOTEBOOK))
    extra = {name for name, _, _ in workbook.EXTRA_PARAMETERS}
    assert set(params) - extra == {f.name for f in fields(FinetuneConfig)}
    defaults = _defaults(FinetuneConfig)
    defaults["phase1_dir"] = "results"  # the notebook does not read the machine's $HRL_PHASE1_DIR
    for name, info in params.items():
        if name not in extra:
            assert ast.literal_eval(info["default"]) == defaults[name], name
    nb_cell = next(c for c in workbook.json.loads(workbook.FINETUNE_NOTEBOOK.read_text())["cells"]
                   if "parameters" in c["metadata"].get("tags", []))  # fmt: skip
    assert "".join(nb_cell["source"]) == workbook.parameters_source()  # python -m hrl_core.lab.workbook rewrites it


def test_the_command_line_offers_every_setting_with_its_choices():
    parser = build_parser()
    finetune = parser._subparsers._group_actions[0].choices["finetune"]
    flags = {a.dest: a for a in finetune._actions if a.option_strings}
    for f in fields(FinetuneConfig):
        action = flags[f.name]
        assert action.required == (f.name in CELL_KEYS), f.name
        choices = field_choices(FinetuneConfig, f.name)  # a Literal's values, or its registry's names
        assert tuple(action.choices or ()) == choices, f.name
    args = parser.parse_args(["finetune", "--algo", "cql", "--env", "hopper-medium-v2", "--remove_top_k", "60",
                              "--bonus_type", "none", "--seed", "2", "--quick", "--eval_interval", "250"])  # fmt: skip
    from hrl_core.cli import config_from_args

    cfg = config_from_args(args, FinetuneConfig, QUICK)
    assert (cfg.online_steps, cfg.eval_interval, cfg.eval_episodes) == (5_000, 250, 5)  # explicit flags win
    assert cfg.corruption_seed == 0 and cfg.n_ensemble == 3


def test_agent_settings_come_from_the_config():
    cfg = FinetuneConfig(algo="cql", cql_alpha=2.5, target_reduce="min_random2", n_ensemble=5)
    assert cfg.agent_settings(CQLConfig) == {"n_ensemble": 5, "cql_alpha": 2.5, "target_reduce": "min_random2"}
    assert "cql_alpha" not in cfg.agent_settings(IQLConfig)


def test_values_are_checked_and_typed_on_construction():
    assert FinetuneConfig(remove_top_k=60).remove_top_k == 60.0 and isinstance(FinetuneConfig(seed=2.0).seed, int)
    for bad, message in [({"algo": "td3"}, "use one of cql, iql"), ({"n_ensemble": 11}, "above its range"),
                         ({"remove_top_k": 100}, "above its range [0, 100)"), ({"device": "gpu"}, "cuda:N"),
                         ({"bonus_coeff": "x"}, "is not a number")]:  # fmt: skip
        with pytest.raises(HrlError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
            FinetuneConfig(**bad)
