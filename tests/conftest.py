"""Shared test setup: Hypothesis profiles, the CUDA marker's skip, and the fake-dataset folder.

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


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A folder with tiny fake SVHN and MNIST files in the official formats (``fake_data.py``: 200 training
    and 50 test images), their checksums patched in and downloads forbidden, for one test module. Module
    scope on purpose: the checksum patch must not outlive the module (the real-data tests need the real
    checksums)."""
    from fake_data import install_fake_datasets

    root = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as mp:
        install_fake_datasets(mp, root, n_train=200, n_test=50)
        mp.setenv("SSGAN_OFFLINE", "1")
        yield root


def pytest_collection_modifyitems(config, items):
    """Skip ``@pytest.mark.cuda`` tests, saying why, when CuPy has no usable GPU."""
    from minigrad.backend import cuda_available

    if cuda_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device: CuPy is not installed or sees no GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
