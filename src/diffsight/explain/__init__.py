"""Explainers: each reads a Trace (and the model where it must evaluate it) and returns an Explanation
(DESIGN.md, contract 5).

======================  ===============================================================================
``Filmstrip``           x_t, x0_hat and change maps per step, per-step scalars
``SpectralEmergence``   power spectrum of x0_hat per step, emergence step per frequency band, coarse-to-fine
``Commitment``          when each factor was decided: agreement of fresh-noise continuations (branching)
``ProbeCurves``         factor probes applied to x0_hat at every step
``GuidanceMap``         where and when the condition acts: D(x | c) - D(x | null) per step and pixel
``GradientAttribution`` saliency / integrated gradients of a probe logit or a region w.r.t. x at a step
``LikelihoodMaps``      bits/dim, per-pixel surprise and class information of the final sample
``text_to_image``       text-to-image runs with per-step, per-token cross-attention maps and interventions
======================  ===============================================================================

``explain_trace(trace, model)`` runs every explainer that applies; ``explain_run`` records the Trace first.
"""

from diffsight.explain.attribution import (
    GradientAttribution,
    ProbeTarget,
    RandomisationCheck,
    RegionTarget,
    randomisation_check,
    randomised_copy,
)
from diffsight.explain.commitment import Commitment, decided_row
from diffsight.explain.cross_attention import AttentionMaps, CrossAttentionRecorder
from diffsight.explain.explanation import Explainer, Explanation, jsonable
from diffsight.explain.factors import ClassifierReader, ComponentReader, FactorReader, reader_for_model
from diffsight.explain.filmstrip import Filmstrip
from diffsight.explain.guidance import GuidanceMap
from diffsight.explain.html import explanation_html
from diffsight.explain.likelihood import LikelihoodMaps, ScoreResult, data_levels, score_inputs
from diffsight.explain.narrative import narrate
from diffsight.explain.probes import ProbeCurves
from diffsight.explain.run import ExplainedRun, explain_run, explain_trace
from diffsight.explain.spectral import SpectralEmergence, radial_power_spectrum
from diffsight.explain.text_conditioning import TextSample, prompt_interventions, text_to_image, word_information

__all__ = [
    "AttentionMaps",
    "CrossAttentionRecorder",
    "TextSample",
    "prompt_interventions",
    "text_to_image",
    "word_information",
    "ClassifierReader",
    "Commitment",
    "ComponentReader",
    "ExplainedRun",
    "Explainer",
    "Explanation",
    "FactorReader",
    "Filmstrip",
    "GradientAttribution",
    "GuidanceMap",
    "LikelihoodMaps",
    "ProbeCurves",
    "ProbeTarget",
    "RandomisationCheck",
    "RegionTarget",
    "ScoreResult",
    "SpectralEmergence",
    "data_levels",
    "decided_row",
    "explain_run",
    "explain_trace",
    "explanation_html",
    "jsonable",
    "narrate",
    "radial_power_spectrum",
    "randomisation_check",
    "randomised_copy",
    "reader_for_model",
    "score_inputs",
]
