"""Helpers that know nothing of models or data: atomic file writes (:mod:`.atomic`),
state-dict I/O (:mod:`.state_dict`) and the one name → builder registry with its
"did you mean" (:mod:`.registry`)."""
