"""Behaviour policies shipped with hrl: ``<dataset>.pt``, each trained by
``hrl data generate <dataset> --from_scratch --save_policy`` until it reached D4RL's
"medium" level, with its training record inside (see ``hrl_core.run.generate``)."""
