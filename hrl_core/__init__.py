"""hrl_core: Phase II of the hybrid-RL recovery study.

Load Phase I CQL/IQL checkpoints, widen the critic to a Q-ensemble and fine-tune
online with hybrid replay and an optional ensemble-disagreement exploration bonus.
"""

__version__ = "0.1.0"
