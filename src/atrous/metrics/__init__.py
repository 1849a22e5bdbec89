"""Metrics, side by side: :mod:`.semantic` (one dataset-level confusion matrix → pixel
accuracy, mean accuracy, per-class IoU, mIoU, FWIoU) and :mod:`.instance` (box and mask AP
through pycocotools, imported only when asked for so the semantic path never loads it)."""

from .semantic import ConfusionMatrix, SegmentationMetrics, absent_note, best_miou_text, format_table

__all__ = ["ConfusionMatrix", "SegmentationMetrics", "absent_note", "best_miou_text", "format_table"]
