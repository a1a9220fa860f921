"""The Trace: the record of one sampling run that every explainer reads (DESIGN.md, contract 4)."""

from diffsight.trace.html import trace_html
from diffsight.trace.io import load_trace, save_trace
from diffsight.trace.record import TRACE_FORMAT, TRACE_FORMAT_VERSION, Trace, content_hash
from diffsight.trace.recorder import TraceBudgetError, TraceRecorder, recorded_steps
from diffsight.trace.run import ReplayResult, guided_denoiser, model_of_trace, record_trace, replay

__all__ = [
    "TRACE_FORMAT",
    "TRACE_FORMAT_VERSION",
    "ReplayResult",
    "Trace",
    "TraceBudgetError",
    "TraceRecorder",
    "content_hash",
    "guided_denoiser",
    "load_trace",
    "model_of_trace",
    "record_trace",
    "recorded_steps",
    "replay",
    "save_trace",
    "trace_html",
]
