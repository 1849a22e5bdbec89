"""The tasks the training loop (:mod:`atrous.engine.trainer`) runs: :mod:`.semantic` and
:mod:`.instance` (imported only for instance runs: it loads pycocotools)."""
