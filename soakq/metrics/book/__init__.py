"""The `book` metric source: a seeded market-making simulator in which the parameters matter.

Modules: ``config`` (constants from package data), ``market`` (mid path and counterparties),
``quotes`` (requote schedule, latency), ``fills`` (takers, inventory, hedges), ``kernels`` (the
two sequential loops), ``metrics`` (KPI definitions), ``simulator`` (one symbol-iteration and the
MetricsSource). The model and the calibration table are in ``docs/simulator.md``.
"""

from soakq.metrics.book.config import BookConfig, load_book_config
from soakq.metrics.book.metrics import BookRun
from soakq.metrics.book.simulator import BookSimulator, simulate

__all__ = ["BookConfig", "BookRun", "BookSimulator", "load_book_config", "simulate"]
