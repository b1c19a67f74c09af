"""Benchmark fixtures and machine info (numba version, threads, threading layer)."""

from __future__ import annotations

import os
import sys

import numba
import numpy as np
import pytest

from fastgrad.bench import blas_threads


def pytest_benchmark_update_machine_info(config, machine_info):
    """Stamp every saved run with what decides the kernels' speed."""
    machine_info["numba_version"] = numba.__version__
    machine_info["numpy_version"] = np.__version__
    machine_info["numba_num_threads"] = numba.config.NUMBA_NUM_THREADS
    machine_info["cpu_count"] = os.cpu_count()
    machine_info["blas_threads"] = blas_threads()  # NumPy's OpenBLAS (None: another BLAS)
    torch = sys.modules.get("torch")  # only when a benchmark imported it
    if torch is not None:
        machine_info["torch_version"] = torch.__version__
        machine_info["torch_num_threads"] = torch.get_num_threads()
    try:
        machine_info["numba_threading_layer"] = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        machine_info["numba_threading_layer"] = "not yet initialised"


@pytest.fixture
def max_threads() -> int:
    """All the threads Numba may use."""
    return numba.config.NUMBA_NUM_THREADS
