"""Shared set-up of the generator tests."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """These models are tiny: one thread is faster, and immune to a busy machine's thread contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
