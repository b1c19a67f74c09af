"""Cold start (empty Numba cache: compiles) and warm start (cache filled), in the benchmark output.

Each round is a new interpreter that imports fastgrad and checks a 4-5-3
net (``startup.py --child``); the benchmark times the whole process, and
``extra_info`` has the import and first-check times measured inside it.
The cold start runs once (it compiles for seconds, with the helper process
that compiles ahead), the warm one three times, both in the same temporary
NUMBA_CACHE_DIR; a second cold start runs without the helper
(``FASTGRAD_COMPILE_AHEAD=0``) in a cache of its own, and its ``extra_info``
also has its total compile time and the ten kernels that took longest to
compile (exclusive seconds). A third group times a process
that imports numpy and Numba alone, the floor under any warm start.
"""

from __future__ import annotations

import pytest
from startup import run_child

STARTUP_GROUP = "startup 4-5-3 (new process)"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One Numba cache directory for this module: empty for the cold start, filled after it."""
    return tmp_path_factory.mktemp("numba_cache")


def _info(benchmark, result, label, cache):
    assert result["passed"], result
    assert result["max_rel_error"] < 1e-9, result
    benchmark.extra_info.update(
        label=label, role="startup", cache=cache, n_params=result["n_params"], n_samples=8, depth=2, sizes="4-5-3",
        threads="default",
        dtype="float64", method="central", engine="incremental",
        **{k: result[k] for k in ("import_seconds", "first_check_seconds", "second_check_seconds", "numba_version")},
    )


def test_startup_cold(benchmark, cache_dir):
    assert not any(cache_dir.iterdir()), "the cold start needs an empty cache"
    benchmark.group = STARTUP_GROUP
    result = benchmark.pedantic(run_child, args=(str(cache_dir),), rounds=1, iterations=1)
    assert any(cache_dir.rglob("*.nbi")), "the cold start wrote no Numba cache"
    _info(benchmark, result, "cold start (empty cache, compiles, with its helper)", "empty")
    benchmark.extra_info.update(helper=result["helper"])


def test_startup_cold_one_process(benchmark, tmp_path):
    benchmark.group = STARTUP_GROUP
    result = benchmark.pedantic(run_child, args=(str(tmp_path),), kwargs={"ahead": False}, rounds=1, iterations=1)
    assert not result["helper"]
    _info(benchmark, result, "cold start (empty cache, compiles, one process: FASTGRAD_COMPILE_AHEAD=0)", "empty")
    benchmark.extra_info.update(compile_seconds=result["compile_seconds"],
                                compile_top10={r["kernel"]: round(r["exclusive"], 3)
                                               for r in result["compile_times"][:10]})


def test_startup_warm(benchmark, cache_dir):
    if not any(cache_dir.rglob("*.nbi")):  # the cold start was deselected: fill the cache, untimed
        run_child(str(cache_dir))
    benchmark.group = STARTUP_GROUP
    result = benchmark.pedantic(run_child, args=(str(cache_dir),), rounds=3, iterations=1)
    _info(benchmark, result, "warm start (cache filled)", "filled")


def test_startup_numpy_numba_alone(benchmark, cache_dir):
    benchmark.group = STARTUP_GROUP
    result = benchmark.pedantic(run_child, args=(str(cache_dir), "--baseline"), rounds=3, iterations=1)
    benchmark.extra_info.update(label="import numpy and numba alone", role="startup-floor",
                                import_seconds=result["import_seconds"])
