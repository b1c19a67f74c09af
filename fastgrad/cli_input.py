"""The command line's inputs: sizes and counts, and .npz archives read without pickle, vetted before loading.

:mod:`fastgrad.cli` parses ``--sizes`` and ``--batch`` and reads
``--params``, ``--data`` and ``--grads`` through these functions: every
.npy header is read and checked (dtype, shape, size against the member and
against the memory available) before any array is allocated, and a check
too large for the memory available is refused with the figures. Every
refusal is a :class:`UsageError` (one line, exit 2).
"""

from __future__ import annotations

import argparse
import decimal
import math
import zipfile
from collections.abc import Sequence

import numpy as np

import fastgrad
from fastgrad import _validate


def _sizes(text: str) -> list[int]:
    try:
        return [_count(part) for part in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 784,128,10, got {text[:80]!r}"
        ) from None


def _count(text: str) -> int:
    """Parse a whole number, also in exponent notation (``1e4``); the size checks come later."""
    try:
        value = decimal.Decimal(text.strip())
    except decimal.InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value != value.to_integral_value():
        raise argparse.ArgumentTypeError(f"expected a whole number such as 64 or 1e4, got {text!r}")
    if abs(value.adjusted()) > 4300:  # int() of a longer number is refused by Python itself
        raise argparse.ArgumentTypeError(f"expected a whole number such as 64 or 1e4, got {text[:20]!r}...")
    return int(value)


class UsageError(Exception):
    """Bad command line or bad input file; reported as one line, exit status 2."""


# ---------------------------------------------------------------------- npz input


class _Member:
    """One array of an .npz archive, known from its .npy header only (nothing loaded)."""

    def __init__(self, key: str, member: str, shape: tuple[int, ...], dtype: np.dtype, nbytes: int) -> None:
        self.key = key
        self.member = member
        self.shape = shape
        self.ndim = len(shape)
        self.dtype = dtype
        self.nbytes = nbytes


def _open_npz(path: str, role: str) -> np.lib.npyio.NpzFile:
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise UsageError(f"{role} file {path!r}: cannot read: {exc}") from None
    if magic[:2] != b"PK":  # not a zip: np.load would blame pickled data and suggest allow_pickle=True
        raise UsageError(f"{role} file {path!r}: not an .npz archive (np.savez writes one)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{role} file {path!r}: cannot read: {exc}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UsageError(f"{role} file {path!r}: not an .npz archive")
    return archive


def _member(archive: np.lib.npyio.NpzFile, key: str, path: str, role: str) -> _Member:
    """Read and vet the .npy header of ``key``: its shape, dtype and size, without loading the array.

    Refused: a missing key, a member that is not an .npy array, an object
    dtype (it would need pickle), a header claiming more data than the
    member holds (a truncated or forged file), and an array larger than
    the memory available. Sizes are Python ints: a forged header cannot
    overflow them.
    """
    if key not in archive.files:
        found = ", ".join(archive.files) or "none"
        raise UsageError(f"{role} file {path!r}: missing key {key!r} (found: {found})")
    where = f"{role} file {path!r}: key {key!r}"
    zf = archive.zip
    if zf is None:  # (an NpzFile always has its zip open until closed)
        raise UsageError(f"{where}: the archive is closed")
    names = zf.namelist()
    member = key + ".npy" if key + ".npy" in names else key
    try:
        info = zf.getinfo(member)
        with zf.open(member) as fp:
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
            else:
                raise ValueError(f".npy format version {version[0]}.{version[1]} is not read (only 1.0 and 2.0)")
            header_bytes = fp.tell()
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{where}: not a readable .npy array: {exc}") from None
    if dtype.hasobject:
        raise UsageError(
            f"{where}: dtype {dtype} holds Python objects, which only pickle can load; "
            "fastgrad reads numeric arrays only (allow_pickle=False)"
        )
    if any(d < 0 for d in shape):
        raise UsageError(f"{where}: the header's shape {shape} has a negative dimension")
    nbytes = math.prod(shape) * dtype.itemsize
    held = info.file_size - header_bytes
    if nbytes > held:
        raise UsageError(
            f"{where}: the header claims shape {shape} {dtype} ({_validate.format_bytes(nbytes)}) but the "
            f"member holds {_validate.format_bytes(max(held, 0))} of data: the file is truncated or corrupt"
        )
    short = _validate.memory_shortfall(nbytes)
    if short is not None:
        raise UsageError(f"{where}: shape {shape} {dtype} is {_validate.format_bytes(nbytes)}, {short}")
    return _Member(key, member, tuple(int(d) for d in shape), dtype, nbytes)


def _read_member(archive: np.lib.npyio.NpzFile, member: _Member, path: str, role: str) -> np.ndarray:
    """Load an array vetted by :func:`_member` (never with pickle)."""
    try:
        zf = archive.zip
        if zf is None:  # (an NpzFile always has its zip open until closed)
            raise UsageError(f"{role} file {path!r}: the archive is closed")
        with zf.open(member.member) as fp:
            return np.asarray(np.lib.format.read_array(fp, allow_pickle=False))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{role} file {path!r}: key {member.key!r}: {exc}") from None


def tensor_members(path: str, role: str) -> list[_Member]:
    """Read the headers of ``W1, b1, W2, b2, ...`` in an .npz file, in layer order (nothing loaded).

    Raises
    ------
    UsageError
        If the file cannot be read, a key is missing, there are extra keys,
        or a member is not a loadable numeric array (see :func:`_member`).
    """
    with _open_npz(path, role) as archive:
        n_layers = 0
        while f"W{n_layers + 1}" in archive.files:
            n_layers += 1
        names = [
            f"{p}{layer}"
            for layer in range(1, max(n_layers, 1) + 1)
            for p in ("W", "b")
        ]
        members = [_member(archive, name, path, role) for name in names]
        extra = sorted(set(archive.files) - set(names))
        if extra:
            raise UsageError(
                f"{role} file {path!r}: unexpected key(s) {', '.join(extra)} "
                f"(expected {', '.join(names)})"
            )
    return members


def _read_members(path: str, role: str, members: list[_Member]) -> list[np.ndarray]:
    with _open_npz(path, role) as archive:
        return [_read_member(archive, m, path, role) for m in members]


def load_tensors(path: str, role: str) -> list[np.ndarray]:
    """Read ``W1, b1, W2, b2, ...`` from an .npz file, in layer order.

    Parameters
    ----------
    path : str
        The .npz file; read without pickle, each member's header vetted
        before its array is allocated (:func:`tensor_members`).
    role : str
        ``"params"`` or ``"grads"``, used in error messages.

    Returns
    -------
    list of ndarray
        ``[W1, b1, ..., WL, bL]``.

    Raises
    ------
    UsageError
        If the file cannot be read, a key is missing, there are extra keys,
        or a member is not a loadable numeric array that fits in memory.
    """
    return _read_members(path, role, tensor_members(path, role))


def data_members(path: str) -> list[_Member]:
    """Read the headers of ``X`` and ``Y`` in an .npz file (nothing loaded)."""
    with _open_npz(path, "data") as archive:
        return [_member(archive, key, path, "data") for key in ("X", "Y")]


def load_data(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Read ``X`` and ``Y`` from an .npz file (no pickle; headers vetted first)."""
    X, Y = _read_members(path, "data", data_members(path))
    return X, Y


def infer_sizes(params: Sequence[np.ndarray | _Member], weight_layout: str = "in_out") -> list[int]:
    """Return ``[D, H1, ..., K]`` from the weight shapes ``W_l (fan_in, fan_out)`` (or (fan_out, fan_in))."""
    weights = params[0::2]
    expected = "(fan_out, fan_in)" if weight_layout == "out_in" else "(fan_in, fan_out)"
    for layer, W in enumerate(weights, start=1):
        if W.ndim != 2:
            raise UsageError(
                f"params: tensor 'W{layer}' has shape {W.shape}, expected 2-D "
                f"{expected}; pass --sizes"
            )
    shapes = [tuple(int(d) for d in W.shape)[:: -1 if weight_layout == "out_in" else 1] for W in weights]
    biases = [int(np.prod(b.shape)) for b in params[1::2]]
    if len(biases) == len(shapes) and any(b != s[1] for b, s in zip(biases, shapes)) and \
            all(b == s[0] for b, s in zip(biases, shapes)):
        other = "in_out" if weight_layout == "out_in" else "out_in"
        raise UsageError(f"params: the biases' sizes {biases} match the weights read the other way round: "
                         f"pass --weight-layout {other} (weights {shapes[0][::-1]} ...), or --sizes")
    return [shapes[0][0]] + [s[1] for s in shapes]


def random_data(sizes: Sequence[int], loss: str, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``fastgrad check``'s data without ``--data``: X standard normal; Y uniform, or one-hot rows for cross_entropy."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, sizes[0]))
    if loss == "cross_entropy":
        Y = np.eye(sizes[-1], dtype=np.float64)[rng.integers(0, sizes[-1], size=batch)]
    else:
        Y = rng.uniform(0.0, 1.0, size=(batch, sizes[-1]))
    return X, Y


def add_convention_arguments(parser: argparse.ArgumentParser) -> None:
    """``fastgrad check``'s options for the MLP's loss conventions and weight layout (:class:`fastgrad.MLP`)."""
    parser.add_argument("--reduction", choices=["sum", "mean", "mean_all"], default=None,
                        help="the data term's reduction (default: the loss's own: a mean over samples for mse, "
                        "cross_entropy and bce, a sum for sse and half_sse); mean_all: over all N x K elements")
    parser.add_argument("--scale", type=float, default=1.0, help="a constant factor on the data term (default: 1)")
    parser.add_argument("--l2", type=float, default=0.0, help="add L2 * sum ||W||^2 (weights only) to the loss")
    parser.add_argument("--leaky-slope", type=float, default=0.01, help="leaky_relu's slope below 0 (default: 0.01)")
    parser.add_argument("--weight-layout", choices=["in_out", "out_in"], default="in_out",
                        help="weights in --params/--grads as (fan_in, fan_out) (default) or (fan_out, fan_in)")


def convention_kwargs(args: argparse.Namespace) -> dict:
    """The :class:`fastgrad.MLP` keyword arguments :func:`add_convention_arguments`' options give."""
    return {"reduction": args.reduction, "scale": args.scale, "l2": args.l2, "leaky_slope": args.leaky_slope,
            "weight_layout": args.weight_layout}


def _check_memory(
    net: fastgrad.MLP, n_rows: int, rows_from: str, params_in_file: bool, n_grads: int, doubled: bool = False
) -> None:
    """Refuse (``UsageError``) a check whose memory (its measured peak) exceeds what is available.

    Counted in Python ints before anything is allocated: the parameters
    and the gradients to check (8 bytes each), the data (8 bytes per row
    and column), and what the check itself allocates at its peak
    (:func:`fastgrad._validate.work_memory`).
    """
    P = net.n_params
    units = sum(net.sizes[1:])
    data = 8 * n_rows * (net.sizes[0] + net.sizes[-1])
    inputs = 8 * P * (1 + n_grads)
    # --engine full peaks at about twice a default check (fastgrad.checking._resolve)
    peak = _validate.DOUBLE_BYTES_PER_PARAM if doubled else _validate.CHECK_BYTES_PER_PARAM
    work = _validate.work_memory(P, units, n_rows, peak)
    need = inputs + data + work
    short = _validate.memory_shortfall(need)
    if short is None:
        return
    per_row = data + _validate.ACTIVATION_BYTES * n_rows * units
    fmt = _validate.format_bytes
    if per_row >= need - per_row:
        culprit = f"{rows_from} ({n_rows:,} rows)"
    else:
        culprit = "--params" if params_in_file else "--sizes " + ",".join(map(str, net.sizes))
        culprit += f" ({P:,} parameters)"
    raise UsageError(
        f"{culprit} too large: the check needs about {fmt(need)} of memory "
        f"({fmt(need - per_row)} for the parameters, {fmt(per_row)} for {n_rows:,} rows of data and "
        f"activations), {short}"
    )
