"""check_function(..., workers=client) on a dask.distributed LocalCluster: the same bits as workers=None.

One module-scoped LocalCluster (2 process workers, 1 thread each). Functions
reach the workers by value (cloudpickle): the examples are loaded from their
files (modules not importable by name), and ``dask_models`` is registered
with ``cloudpickle.register_pickle_by_value``, so nothing depends on the
workers' ``sys.path`` (a CI runner's or a restarted worker's).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("distributed")

import cloudpickle  # noqa: E402  (a dependency of distributed)
import dask_models  # noqa: E402
from distributed import Client, LocalCluster, get_task_stream  # noqa: E402
from test_function_examples import load_example  # noqa: E402

import fastgrad  # noqa: E402
from fastgrad import workers as fg_workers  # noqa: E402


def local_cluster(processes):
    """2 process workers (or 1 thread), no dashboard, the scheduler's HTTP port free (8787 may be another's)."""
    return LocalCluster(processes=processes, n_workers=2 if processes else 1, threads_per_worker=1,
                        dashboard_address=None, scheduler_kwargs={"dashboard_address": ":0"})


@pytest.fixture(scope="module")
def client():
    cloudpickle.register_pickle_by_value(dask_models)
    cluster = local_cluster(processes=True)
    client = Client(cluster)
    try:
        client.wait_for_workers(2, timeout=60)
        yield client
    finally:
        client.close()
        cluster.close()
        cloudpickle.unregister_pickle_by_value(dask_models)


@pytest.fixture(autouse=True)
def every_table_on_the_cluster(monkeypatch):
    """Small models too go to the workers (by default a table under 0.1 s of work runs here)."""
    monkeypatch.setattr(fg_workers, "CLIENT_MIN_SECONDS", 0.0)


def failing(result):
    return {t.name for t in result.tensors if not t.passed}


def _cases():
    """(id, f, params, grads, args, tensors that must fail): examples' checks and two models of dask_models."""
    picked = {
        "rnn_lstm.py": None,  # all three, the LSTM bug included
        "l2_bce.py": None,
        "layers.py": {"affine", "conv 3x3", "batchnorm, bug no_mean_term", "softmax loss, bug unscaled_dx"},
    }
    cases = []
    for name, labels in picked.items():
        for label, f, params, grads, args, must_fail in load_example(name).checks(0):
            if labels is None or label in labels:
                cases.append((f"{name}:{label}", f, params, grads, args, must_fail))
    params, X = dask_models.make_case(0)
    cases.append(("list params", dask_models.tanh_loss, params, dask_models.tanh_grads(params, X), (X,), set()))
    wrong = dask_models.tanh_grads(params, X)
    wrong[1] = wrong[1] * 1.01
    cases.append(("list params, wrong p1", dask_models.tanh_loss, params, wrong, (X,), {"p1"}))
    x, a = np.linspace(-1.0, 1.5, 12).reshape(3, 4), np.linspace(0.5, 2.0, 12).reshape(3, 4)
    cases.append(("one array", dask_models.scalar_loss, x, dask_models.scalar_grads(x, a), (a,), set()))
    return cases


CASES = _cases()


def assert_same(local, remote):
    assert len(local.numerical) == len(remote.numerical)
    for t, (a, b) in enumerate(zip(local.numerical, remote.numerical)):
        assert np.array_equal(a, b, equal_nan=True), f"tensor {local.tensors[t].name}: not the same bits"
    assert remote.passed == local.passed
    assert [t.passed for t in remote.tensors] == [t.passed for t in local.tensors]
    assert remote.inconclusive_reasons == local.inconclusive_reasons
    assert remote.lost_workers == [] and remote.notes == local.notes


@pytest.mark.parametrize("method", ["central", "richardson", "complex"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_client_gives_the_bits_of_workers_none(client, case, method):
    _, f, params, grads, args, must_fail = case
    try:
        local = fastgrad.check_function(f, params, grads, args=args, method=method)
    except TypeError as e:  # method="complex" on an f that drops the imaginary part
        assert method == "complex", e
        pytest.skip(f"f does not take complex parameters: {e}")
    remote = fastgrad.check_function(f, params, grads, args=args, method=method, workers=client)
    assert_same(local, remote)
    if method != "complex":  # the examples' expectations are for their differences
        assert failing(remote) == must_fail, remote


def test_the_blocks_run_on_the_workers(client):
    params, X = dask_models.make_case(1, D=8, H=6)
    with get_task_stream(client) as stream:
        remote = fastgrad.check_function(dask_models.tanh_loss, params, dask_models.tanh_grads(params, X), args=(X,),
                                         workers=client)
    ran = [task for task in stream.data if "_run_block" in str(task["key"])]
    assert len({task["worker"] for task in ran}) == 2  # both workers, at least 2 blocks each
    assert len(ran) >= 2 * 2
    assert_same(fastgrad.check_function(dask_models.tanh_loss, params, dask_models.tanh_grads(params, X),
                                        args=(X,)), remote)


@pytest.mark.slow  # compiles the parallel kernel for the loss, here and on each worker (~10 s on 2 busy cores)
def test_jitted_loss_runs_its_kernel_on_the_workers(client):
    x, y, a = np.linspace(-1.0, 1.0, 30), np.linspace(0.0, 2.0, 30), np.linspace(0.5, 2.0, 30)
    right = dask_models.cubic_grads((x, y), a)
    wrong = [right[0], right[1] * 1.001]
    for method in ("central", "richardson"):
        for grads, must_fail in ((right, set()), (wrong, {"p1"})):
            local = fastgrad.check_function(dask_models.cubic_loss, (x, y), grads, args=(a,), method=method)
            with get_task_stream(client) as stream:
                remote = fastgrad.check_function(dask_models.cubic_loss, (x, y), grads, args=(a,), method=method,
                                                 workers=client)
            assert any("_run_block" in str(task["key"]) for task in stream.data)
            assert_same(local, remote)
            assert failing(remote) == must_fail


def test_block_sizes():
    blocks = fg_workers.client_blocks
    assert blocks(2000, 4e-3, 2) == 160  # 50 ms of f per block
    assert blocks(2000, 4e-6, 2) == 4  # f fast: 2 blocks per worker all the same
    assert blocks(3, 1.0, 2) == 3  # never more blocks than entries
    assert blocks(10**6, 4e-3, 2) == fg_workers.MAX_BLOCKS  # a few hundred at most


def test_without_dask_the_error_says_what_to_install(monkeypatch):
    class LooksLikeAClient:
        def scatter(self, *a, **k): ...
        def submit(self, *a, **k): ...
        def gather(self, *a, **k): ...
        def scheduler_info(self, *a, **k): ...

    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed raises ImportError
    with pytest.raises(ImportError, match=r'pip install "fastgrad\[dask\]"'):
        fastgrad.check_function(dask_models.scalar_loss, np.ones(3), np.ones(3), args=(np.ones(3),),
                                workers=LooksLikeAClient())


def test_wrong_workers_type_names_the_client():
    with pytest.raises(TypeError, match="Client"):
        fastgrad.check_function(dask_models.scalar_loss, np.ones(3), np.ones(3), args=(np.ones(3),), workers="2")


def test_thread_workers_are_refused():
    with local_cluster(processes=False) as cluster, Client(cluster) as threads_client:
        with pytest.raises(ValueError, match=r"processes=False.*process workers"):
            fastgrad.check_function(dask_models.scalar_loss, np.ones(3), np.ones(3), args=(np.ones(3),),
                                    workers=threads_client)


def test_a_nondeterministic_f_with_a_lost_worker_fails_with_a_note():
    """annotate: a lost worker's recomputed blocks are not trusted when f answered differently to the same call."""
    x = np.linspace(0.5, 1.5, 6)
    result = fastgrad.check_function(dask_models.scalar_loss, x, dask_models.scalar_grads(x, 1.0), args=(1.0,))
    assert result.passed
    model = fastgrad.function.FunctionModel(dask_models.scalar_loss, x, (1.0,))
    blocks = np.array_split(np.arange(6), 3)
    model.dask_log = fg_workers.DaskLog(1e-3, deterministic=False,
                                        lost=[fg_workers.LostRun("loss table", ["tcp://10.0.0.1:1"], [1], blocks)])
    fg_workers.annotate(model, result)
    assert not result.passed and result.status == "failed"
    assert result.lost_workers == ["tcp://10.0.0.1:1"]
    assert "block 1 (entries 2-3) of 3" in result.notes[0] and "nondeterministic" in result.notes[0]


def test_a_lost_worker_is_recomputed_to_the_same_bits(client):
    """A worker killed mid-run: its blocks are recomputed elsewhere, the result is bitwise the local one."""
    params, X = dask_models.make_case(2, D=10, H=10)  # 110 entries, 440 evaluations of 5 ms: ~1.1 s per worker
    grads = dask_models.tanh_grads(params, X)
    local = fastgrad.check_function(dask_models.tanh_loss, params, grads, args=(X, 0.0))
    victim = sorted(client.scheduler_info(n_workers=-1)["workers"])[0]
    pid = client.run(os.getpid, workers=[victim])[victim]
    started = threading.Event()

    def kill():  # SIGKILL, 0.4 s into the blocks: the worker's running and finished blocks are lost with it
        started.wait(30)
        time.sleep(0.4)
        os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill)
    killer.start()

    def progress(done, total):
        started.set()

    try:
        remote = fastgrad.check_function(dask_models.tanh_loss, params, grads, args=(X, 0.005), workers=client,
                                         progress=progress)
    finally:
        started.set()
        killer.join()
    assert all(np.array_equal(a, b) for a, b in zip(local.numerical, remote.numerical))
    assert remote.passed == local.passed
    assert remote.lost_workers == [victim], (remote.lost_workers, remote.advice)
    assert any(victim in remark and "loss table: block" in remark and "same bits" in remark
               for remark in remote.advice), remote.advice
    assert not remote.notes
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it

