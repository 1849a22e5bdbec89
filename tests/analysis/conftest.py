"""One thread for the analysis tests: their tensors are tiny (33–97 pixels, a handful of
channels on the CPU), where a second thread only adds synchronisation — and on a shared
two-core machine, OpenMP threads spin-waiting for a descheduled sibling made the
effective-field probe 25× slower (5 s instead of 0.2 s)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
