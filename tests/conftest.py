"""Shared test setup: Hypothesis profiles and the CUDA marker's skip.

Profiles: ``ci`` (fixed seed, derandomized: the same examples every run; the default) and ``dev``
(random, more examples). Pick one with ``--hypothesis-profile=dev``.
"""
import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", deadline=None, derandomize=True, max_examples=25, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "dev", deadline=None, max_examples=200, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(config, items):
    """Skip ``@pytest.mark.cuda`` tests, saying why, when CuPy has no usable GPU."""
    from minigrad.backend import cuda_available

    if cuda_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device: CuPy is not installed or sees no GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
