"""One call's time and memory peaks: tracemalloc's traced peak and, on Linux, the peak RSS above the start.

Shared by ``bench_report.py`` and ``big_net.py``. The RSS peak is ``VmHWM`` after
``/proc/self/clear_refs`` reset it to the current RSS: it sees every allocation,
NumPy's included, where tracemalloc sees only the traced ones. Off Linux (no
``/proc``) the RSS figures are None.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from typing import Any


def _vm_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def measure(action: Callable[[], Any]) -> dict[str, Any]:
    """Run ``action`` once: its value, seconds and memory peaks.

    Keys: ``value``, ``seconds``, ``traced_bytes``, ``rss_bytes`` (peak RSS above the start) and
    ``process_peak_bytes`` (the last two None off Linux).
    """
    rss_ok = _reset_peak_rss()
    rss0 = _vm_kib("VmRSS:")
    tracemalloc.start()
    try:
        started = time.perf_counter()
        value = action()
        seconds = time.perf_counter() - started
        _, traced = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    hwm = _vm_kib("VmHWM:")
    rss = (hwm - rss0) * 1024 if rss_ok and hwm is not None and rss0 is not None else None
    return {"value": value, "seconds": seconds, "traced_bytes": traced, "rss_bytes": rss,
            "process_peak_bytes": hwm * 1024 if hwm is not None else None}
