"""What atrous convolution does to a model, made visible.

* :func:`receptive_fields` — the theoretical receptive field (size, jump, centre) of every
  backbone stage and head branch, from one walk of the forward pass (:mod:`.tracer`,
  :mod:`.fields`; Araujo et al., Distill 2019).

The walk runs on PyTorch's ``meta`` device: no weights, no arithmetic, any input size in a
fraction of a second.
"""

from .fields import Field
from .receptive_field import FieldRow, receptive_fields
from .tracer import FieldWalk, Trace, trace_model

__all__ = ["Field", "FieldRow", "FieldWalk", "Trace", "receptive_fields", "trace_model"]
