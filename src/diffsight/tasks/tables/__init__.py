"""Tables: a diffusion model for rows of numeric and categorical columns, and gap filling with intervals.

Numeric columns go through a quantile transform to a standard normal, categorical ones through a +-1 one-hot
code (:mod:`.transforms`); an MLP denoiser with EDM preconditioning is trained by self-supervised masking to
generate the hidden cells of a row from the given ones (:mod:`.network`, :mod:`.fit`); any sampler of
:mod:`diffsight.sampling` draws K completions per row (:mod:`.draw`), whose spread is turned into
split-conformal intervals on cells withheld from training (:mod:`.conformal`). Optionally a Gaussian fitted by
EM gives the network a linear baseline to correct (:mod:`.gaussian`); the filled value of a numeric cell stacks
the mean of its draws with a linear fill in the table's own units (:mod:`.stacking`). See docs/tables.md.
"""

from __future__ import annotations

from diffsight.tasks.tables.config import TableDiffusionConfig
from diffsight.tasks.tables.conformal import conformal_scale, conformity_scores, interval_from_samples
from diffsight.tasks.tables.draw import draw_rows
from diffsight.tasks.tables.gaussian import GaussianPrior, gaussian_conditional
from diffsight.tasks.tables.io import read_table
from diffsight.tasks.tables.model import ImputationResult, TabularDiffusion
from diffsight.tasks.tables.network import RowCondition, TableBackbone, masked_edm_loss
from diffsight.tasks.tables.schema import ColumnSpec, check_table, infer_columns
from diffsight.tasks.tables.stacking import LinearFill, stack_weight
from diffsight.tasks.tables.transforms import QuantileNormal, TableEncoder

__all__ = [
    "ColumnSpec",
    "GaussianPrior",
    "ImputationResult",
    "LinearFill",
    "QuantileNormal",
    "RowCondition",
    "TableBackbone",
    "TableDiffusionConfig",
    "TableEncoder",
    "TabularDiffusion",
    "check_table",
    "conformal_scale",
    "conformity_scores",
    "draw_rows",
    "gaussian_conditional",
    "infer_columns",
    "interval_from_samples",
    "masked_edm_loss",
    "read_table",
    "stack_weight",
]
