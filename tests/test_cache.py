"""fastgrad's on-disk kernel cache: several processes at once, a read-only install, a damaged file (issue 13).

See fastgrad/_kernels/_jit.py for the rules. The read-only install is made read-only in a way root respects:
a private mount namespace (``unshare -m``) in which a copy of the package is bind-mounted read-only, so that
Numba's own writability probe (``_CacheLocator.ensure_cache_path``) fails for real; the tests skip where
``unshare`` cannot do that (no privilege for a mount namespace).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numba
import pytest

import fastgrad

ROOT = Path(fastgrad.__file__).resolve().parent.parent
#: Seconds a subprocess may take: 8 cold processes on a busy 2-core machine compile for minutes.
TIMEOUT = 900

#: Imports fastgrad, checks a 4-5-3 net and prints one JSON line: the result and how many fastgrad kernels
#: this process compiled itself (Numba's "numba:compile" event fires on a real compile, not on a cache load).
CHECK = """
import json, numpy as np
from numba.core import event
compiled = []
class L(event.Listener):
    def on_start(self, ev):
        if ev.data["dispatcher"].py_func.__module__.startswith("fastgrad"):
            compiled.append(ev.data["dispatcher"].py_func.__qualname__)
    def on_end(self, ev):
        pass
event.register("numba:compile", L())
import fastgrad
net = fastgrad.MLP([4, 5, 3])
rng = np.random.default_rng(0)
r = fastgrad.check(net, net.init(0), rng.normal(size=(8, 4)), rng.uniform(size=(8, 3)))
d = r.to_dict(); d.pop("seconds")
print(json.dumps({"result": d, "compiled": compiled}))
"""

#: The cheapest call that compiles a few kernels (the forward pass and the loss): where did their cache go?
LOSS = """
import json, sys, numpy as np
import fastgrad
from fastgrad._kernels import forward, loss
net = fastgrad.MLP([4, 5, 3])
value = net.loss(net.init(0), np.ones((3, 4)), np.zeros((3, 3)))
paths = sorted({k.dispatcher._cache.cache_path or "none" for m in (forward, loss) for k in vars(m).values()
                if type(k).__name__ == "Kernel" and k.dispatcher.overloads})
hits = sum(sum(k.dispatcher._cache_hits.values()) for m in (forward, loss) for k in vars(m).values()
           if type(k).__name__ == "Kernel")
print(json.dumps({"file": fastgrad.__file__, "loss": value, "cache_paths": paths, "cache_hits": hits}))
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "FASTGRAD_CACHE", "NUMBA_DISABLE_JIT")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env.update(extra)
    return env


def _last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_eight_processes_start_together_on_an_empty_cache(tmp_path):
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    env = _env(NUMBA_CACHE_DIR=str(cache))
    procs = [subprocess.Popen([sys.executable, "-c", CHECK], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(8)]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=TIMEOUT)
            outs.append(_last_json(subprocess.CompletedProcess(p.args, p.returncode, out, err)))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    results = [o["result"] for o in outs]
    assert all(r == results[0] for r in results), "the 8 processes disagree"
    assert results[0]["passed"] and results[0]["n_checked"] == 43
    # each kernel was compiled by one process and loaded by the others, which waited for it (the lock): together
    # they compiled far less than 8 times what one of them needs (a few kernels may be compiled twice when a
    # process reaches one before the process compiling it got its lock)
    # (the work is shared: with compiling ahead, every process that compiles a kernel also starts a helper
    # process that compiles the plan from its other end; what counts is that no kernel was compiled by
    # every process: each at most by two, the second one arriving before the first took its lock)
    by_process = [set(o["compiled"]) for o in outs]
    stampede = {name: n for name in set().union(*by_process) if (n := sum(name in s for s in by_process)) > 2}
    assert not stampede, stampede
    # and the cache they left is whole: a ninth process compiles nothing and gets the same result
    ninth = _last_json(subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True,
                                      timeout=TIMEOUT))
    assert ninth["compiled"] == []
    assert ninth["result"] == results[0]
    assert not list(cache.rglob("*.tmp.*")), "a temporary cache file was left behind"


@pytest.fixture(scope="module")
def read_only_mount():
    """Return a runner of ``python -c code`` with given directories bind-mounted read-only (or skip)."""
    unshare = shutil.which("unshare")
    if unshare is None or sys.platform != "linux":
        pytest.skip("needs Linux unshare")
    probe = subprocess.run([unshare, "-m", "sh", "-c", "mount --bind -o ro / / && ! touch /.fastgrad-probe"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a read-only mount here: {probe.stderr.strip()}")

    def run(code: str, read_only: list[Path], **env: str) -> subprocess.CompletedProcess:
        mounts = " && ".join(f'mount --bind -o ro "{d}" "{d}"' for d in read_only)
        script = f'{mounts} && exec "$0" -c "$1"'
        return subprocess.run([unshare, "-m", "sh", "-c", script, sys.executable, code], env=_env(**env),
                              capture_output=True, text=True, timeout=TIMEOUT)

    return run


def _installed_copy(tmp_path: Path) -> Path:
    """Copy the package to ``tmp_path/site`` as an install would (no __pycache__), return ``site``."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "fastgrad", site / "fastgrad", ignore=shutil.ignore_patterns("__pycache__"))
    return site


@pytest.mark.slow
def test_read_only_install_caches_in_the_user_cache_directory(tmp_path, read_only_mount):
    site, xdg = _installed_copy(tmp_path), tmp_path / "xdg-cache"
    xdg.mkdir()
    code = f"import sys; sys.path.insert(0, {str(site)!r})\n" + LOSS
    first = _last_json(read_only_mount(code, [site], XDG_CACHE_HOME=str(xdg)))
    assert first["file"].startswith(str(site))
    # Numba's in-tree locator declined the read-only package; its user-wide locator took $XDG_CACHE_HOME/numba
    assert first["cache_paths"] and all(p.startswith(str(xdg / "numba")) for p in first["cache_paths"]), first
    assert list(xdg.rglob("*.nbi")) and not list(site.rglob("*.nbi"))
    second = _last_json(read_only_mount(code, [site], XDG_CACHE_HOME=str(xdg)))
    assert second["cache_hits"] > 0 and second["loss"] == first["loss"]


@pytest.mark.slow
def test_nothing_writable_compiles_in_memory(tmp_path, read_only_mount):
    # Numba raises RuntimeError("cannot cache function ...: no locator available") when no cache directory is
    # writable; before fastgrad caught it, that was `import fastgrad` failing
    site, xdg = _installed_copy(tmp_path), tmp_path / "xdg-cache"
    xdg.mkdir()
    code = f"import sys; sys.path.insert(0, {str(site)!r})\n" + LOSS
    out = _last_json(read_only_mount(code, [site, xdg], XDG_CACHE_HOME=str(xdg)))
    assert out["cache_paths"] == ["none"] and out["loss"] > 0
    assert not list(xdg.rglob("*.nbi")) and not list(site.rglob("*.nbi"))


KERNEL_MODULE = '''
from fastgrad._kernels._jit import jit

@jit()
def plus_one(x):
    return x + 1
'''


def _load_kernel_module(path: Path):
    spec = importlib.util.spec_from_file_location(f"fastgrad_cache_test_{len(sys.modules)}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_damaged_index_costs_a_compile_not_the_call(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "kernel_module.py"
    source.write_text(KERNEL_MODULE)
    first = _load_kernel_module(source)
    assert first.plus_one(1.0) == 2.0
    (index,) = (tmp_path / "cache").rglob("*.nbi")
    index.write_bytes(b"not a pickle")  # e.g. written by something that is not Numba's atomic writer
    second = _load_kernel_module(source)  # a new dispatcher: it looks in the cache again
    with caplog.at_level(logging.INFO, logger="fastgrad"):
        assert second.plus_one(1.0) == 2.0
    assert "cannot read the kernel cache" in caplog.text
    third = _load_kernel_module(source)  # the compile rewrote the index: loaded from it now
    assert third.plus_one(1.0) == 2.0
    assert sum(third.plus_one.dispatcher._cache_hits.values()) == 1
