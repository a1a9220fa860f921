"""Trust audits (issue 6): does a model copy its training images, which training images shaped an output, and how
much does it leak about who was in the training set? Every audit is calibrated on controls with a known answer
(the empirical oracle memorizes; a Gaussian fit does not; the linear denoiser retrains in closed form)."""

from diffsight.audit.bias import BiasResult, FactorBias, bias_audit, chi_square, factor_bias
from diffsight.audit.data_attribution import LDSResult, TrainingAttribution, linear_datamodeling_score
from diffsight.audit.membership import (
    DEFAULT_SIGMAS,
    MembershipResult,
    SigmaMembership,
    membership_inference,
    roc_auc,
    tpr_at_fpr,
)
from diffsight.audit.memorization import (
    MemorizationAudit,
    MemorizationResult,
    RatioTest,
    choose_threshold,
    control_samples,
    relative_distance,
)
from diffsight.audit.neighbours import Neighbours, nearest_neighbours, tile, tiled_neighbours
from diffsight.audit.sample_attribution import SampleAttribution, attribute_samples, last_block_parameters

__all__ = [
    "SampleAttribution",
    "attribute_samples",
    "last_block_parameters",
    "BiasResult",
    "DEFAULT_SIGMAS",
    "FactorBias",
    "LDSResult",
    "MembershipResult",
    "MemorizationAudit",
    "MemorizationResult",
    "Neighbours",
    "RatioTest",
    "SigmaMembership",
    "TrainingAttribution",
    "bias_audit",
    "chi_square",
    "choose_threshold",
    "control_samples",
    "factor_bias",
    "linear_datamodeling_score",
    "membership_inference",
    "nearest_neighbours",
    "relative_distance",
    "roc_auc",
    "tile",
    "tiled_neighbours",
    "tpr_at_fpr",
]
