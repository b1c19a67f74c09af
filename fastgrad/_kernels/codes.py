"""Integer codes shared by the kernels and the Python layer.

The network reaches the kernels as a flat float64 ``theta`` and an int64
``layout`` table with one row per weight layer and the columns below.
"""

from .activations import elu, identity, leaky_relu, relu, sigmoid, softmax, softplus, tanh
from .losses import CODES as _LOSS_CODES

# Activation codes: each activation's module owns its code (the kernels dispatch through
# :mod:`fastgrad._kernels.activations`); these names are for the Python layer and the tests.
IDENTITY = identity.CODE
SIGMOID = sigmoid.CODE
TANH = tanh.CODE
RELU = relu.CODE
LEAKY_RELU = leaky_relu.CODE
SOFTPLUS = softplus.CODE
SOFTMAX = softmax.CODE
ELU = elu.CODE

#: Slope of ``leaky_relu`` for negative inputs.
LEAKY_SLOPE = leaky_relu.SLOPE

# Loss codes: each loss's module owns its code (:mod:`fastgrad._kernels.losses`).
MSE = _LOSS_CODES["mse"]
SSE = _LOSS_CODES["sse"]
HALF_SSE = _LOSS_CODES["half_sse"]
CROSS_ENTROPY = _LOSS_CODES["cross_entropy"]

# Columns of the layout table.
FAN_IN = 0  # inputs of the layer
FAN_OUT = 1  # units of the layer
W_OFF = 2  # offset of W (fan_in x fan_out, row-major) in theta
B_OFF = 3  # offset of b (fan_out) in theta
U_OFF = 4  # offset of the layer's units in a per-sample activation row
ACT = 5  # activation code
N_COLS = 6

# Differentiation methods, one set for every kernel that takes a method code.
CENTRAL = 0  # (E(w + h) - E(w - h)) / 2h
RICHARDSON = 1  # (4 D(h) - D(2h)) / 3, D the central difference
COMPLEX = 2  # Im E(w + i h) / h
#: Not a difference formula: the incremental assembly's mode for ``engine="unit"``, whose ``E1`` already holds
#: each unit's numerical derivative (:func:`fastgrad._kernels.series.unit_deltas`) and ``E3`` nothing.
UNIT_DELTAS = 3
