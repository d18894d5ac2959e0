"""Step labelling: strategies decide which prefixes to roll out (``strategies.py``, pure); the
labeller runs them against the engine and the store (``labeller.py``)."""

from tasks.labelling.labeller import LabelSummary, label_solutions, label_task
from tasks.labelling.strategies import STRATEGY_NAMES, strategy

__all__ = ["STRATEGY_NAMES", "LabelSummary", "label_solutions", "label_task", "strategy"]
