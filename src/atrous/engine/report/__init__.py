"""``atrous eval --report``: an evaluation that explains itself.

One pass over the split through the evaluator's ``on_batch`` hook (:mod:`.collect`) gathers
per-image figures; :mod:`.build` turns them into the numbers — bootstrap intervals,
boundary IoU, trimap accuracy, calibration and a fitted temperature, IoU by object size,
the most-confused classes and the worst images (:mod:`.errors`) — which :mod:`.html`,
:mod:`.summary` and :mod:`.write` render.
"""

from .build import Comparison, Report, build_report
from .collect import Collected, ImageMatrices, ReportCollector
from .summary import summary_text
from .write import HTML_NAME, JSON_NAME, report_json, write_report

__all__ = [
    "HTML_NAME",
    "JSON_NAME",
    "Collected",
    "Comparison",
    "ImageMatrices",
    "Report",
    "ReportCollector",
    "build_report",
    "report_json",
    "summary_text",
    "write_report",
]
