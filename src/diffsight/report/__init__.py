"""Offline reports and figures (matplotlib, Agg; no display needed): the layer above sampling and explainers.

:func:`run_toy_demo` draws the forward noising and the reverse sampling of 2-D toy data (``diffsight demo``).
"""

from diffsight.report.toy_demo import ToyDemoConfig, ToyDemoResult, run_toy_demo

__all__ = ["ToyDemoConfig", "ToyDemoResult", "run_toy_demo"]
