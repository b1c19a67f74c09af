"""Benchmark fixtures and machine info (numba version, threads, threading layer)."""

from __future__ import annotations

import os

import numba
import numpy as np
import pytest


def pytest_benchmark_update_machine_info(config, machine_info):
    """Stamp every saved run with what decides the kernels' speed."""
    machine_info["numba_version"] = numba.__version__
    machine_info["numpy_version"] = np.__version__
    machine_info["numba_num_threads"] = numba.config.NUMBA_NUM_THREADS
    machine_info["cpu_count"] = os.cpu_count()
    try:
        machine_info["numba_threading_layer"] = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        machine_info["numba_threading_layer"] = "not yet initialised"


@pytest.fixture
def max_threads() -> int:
    """All the threads Numba may use."""
    return numba.config.NUMBA_NUM_THREADS
