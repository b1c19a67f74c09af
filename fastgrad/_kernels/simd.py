"""Four doubles as one value, for register-tiled kernels (``load4``, ``store4``, ``broadcast4``, ``add4``, ``mul4``).

A dense layer's products run at the speed of their loads and stores unless
their running sums stay in registers across the summed index, and Numba
gives no way to say so: LLVM's loop vectoriser only vectorises innermost
loops (sums that go to memory at every step), and its SLP vectoriser, which
could pack a tile of scalar sums, is off in Numba
(``numba.config.SLP_VECTORIZE``). Here a ``vec4`` is LLVM's
``<4 x double>`` as a Numba value: a kernel keeps a tile of sums in a few of
them (see :func:`.forward.forward_layers`), and LLVM keeps those in
registers.

Every operation is one IEEE operation per lane (``fmul``, ``fadd``; no fast-
math flags, so no fused multiply-add and no reassociation): a lane's result
is bit for bit the scalar loop's, on any x86 or other target (where the
target has no 4-wide registers LLVM splits the vector, not the operations).
With ``NUMBA_DISABLE_JIT=1`` the same names are plain NumPy functions on
arrays of four (the kernels then run as the Python they are written in).
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, models, overload, register_model

#: Lanes of a vec4.
LANES = 4

_VECTOR = ir.VectorType(ir.DoubleType(), LANES)


class Vec4Type(types.Type):
    """Numba's type of four float64 lanes held as one LLVM vector."""

    def __init__(self) -> None:
        super().__init__(name="vec4")


vec4 = Vec4Type()


@register_model(Vec4Type)
class _Vec4Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VECTOR)


# ---------------------------------------------------------------- the Python versions (NUMBA_DISABLE_JIT)

def load4(a, i):
    """``a[i:i + 4]`` of a contiguous 1-D float64 array, as one value (the caller keeps ``i + 4 <= len(a)``)."""
    return a[i:i + LANES].copy()


def store4(a, i, v):
    """Write the four lanes of ``v`` to ``a[i:i + 4]``."""
    a[i:i + LANES] = v


def broadcast4(a, i):
    """Four copies of ``a[i]`` (a contiguous 1-D float64 array; no negative index)."""
    return np.full(LANES, a[i], dtype=np.float64)


def add4(x, y):
    """Lane-wise ``x + y``."""
    return x + y


def mul4(x, y):
    """Lane-wise ``x * y``."""
    return x * y


# ---------------------------------------------------------------- the compiled versions

def _element(context, builder, array_type, array, index):
    """Address of ``array[index]`` (1-D, contiguous; no negative-index test)."""
    return builder.gep(context.make_array(array_type)(context, builder, array).data, [index])


def _pointer(context, builder, array_type, array, index):
    """Address of ``array[index]`` as a ``<4 x double>*``."""
    return builder.bitcast(_element(context, builder, array_type, array, index), _VECTOR.as_pointer())


def _splat(builder, value):
    """``value`` in every lane."""
    lane0 = builder.insert_element(ir.Constant(_VECTOR, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(lane0, lane0, ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))


@intrinsic
def _load4(typingctx, a, i):
    def codegen(context, builder, sig, args):
        return builder.load(_pointer(context, builder, sig.args[0], args[0], args[1]), align=8)
    return vec4(a, i), codegen


@intrinsic
def _store4(typingctx, a, i, v):
    def codegen(context, builder, sig, args):
        builder.store(args[2], _pointer(context, builder, sig.args[0], args[0], args[1]), align=8)
        return context.get_dummy_value()
    return types.none(a, i, v), codegen


@intrinsic
def _broadcast4(typingctx, a, i):
    # (a plain a[i] in a kernel costs a negative-index test per load: three integer operations beside every
    # multiply-add of a tile)
    def codegen(context, builder, sig, args):
        return _splat(builder, builder.load(_element(context, builder, sig.args[0], args[0], args[1]), align=8))
    return vec4(a, i), codegen


@intrinsic
def _add4(typingctx, x, y):
    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])
    return vec4(x, y), codegen


@intrinsic
def _mul4(typingctx, x, y):
    def codegen(context, builder, sig, args):
        return builder.fmul(args[0], args[1])
    return vec4(x, y), codegen


def _is_contiguous_float_vector(a):
    return isinstance(a, types.Array) and a.ndim == 1 and a.dtype == types.float64 and a.layout == "C"


@overload(load4, inline="always")
def _load4_impl(a, i):
    if _is_contiguous_float_vector(a) and isinstance(i, types.Integer):
        return lambda a, i: _load4(a, i)
    return None


@overload(store4, inline="always")
def _store4_impl(a, i, v):
    if _is_contiguous_float_vector(a) and isinstance(i, types.Integer) and v == vec4:
        return lambda a, i, v: _store4(a, i, v)
    return None


@overload(broadcast4, inline="always")
def _broadcast4_impl(a, i):
    if _is_contiguous_float_vector(a) and isinstance(i, types.Integer):
        return lambda a, i: _broadcast4(a, i)
    return None


@overload(add4, inline="always")
def _add4_impl(x, y):
    if x == vec4 and y == vec4:
        return lambda x, y: _add4(x, y)
    return None


@overload(mul4, inline="always")
def _mul4_impl(x, y):
    if x == vec4 and y == vec4:
        return lambda x, y: _mul4(x, y)
    return None
