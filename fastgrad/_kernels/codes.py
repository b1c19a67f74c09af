"""Integer codes shared by the kernels and the Python layer.

The network reaches the kernels as a flat float64 ``theta`` and an int64
``layout`` table with one row per weight layer and the columns below.
"""

# Activation codes.
IDENTITY = 0
SIGMOID = 1
TANH = 2
RELU = 3
LEAKY_RELU = 4
SOFTPLUS = 5
SOFTMAX = 6

#: Slope of ``leaky_relu`` for negative inputs.
LEAKY_SLOPE = 0.01

# Loss codes.
MSE = 0
SSE = 1
HALF_SSE = 2
CROSS_ENTROPY = 3

# Columns of the layout table.
FAN_IN = 0  # inputs of the layer
FAN_OUT = 1  # units of the layer
W_OFF = 2  # offset of W (fan_in x fan_out, row-major) in theta
B_OFF = 3  # offset of b (fan_out) in theta
U_OFF = 4  # offset of the layer's units in a per-sample activation row
ACT = 5  # activation code
N_COLS = 6

# Differentiation methods of :func:`fastgrad._kernels.numgrad.full_differences`.
CENTRAL = 0  # (E(w + h) - E(w - h)) / 2h
RICHARDSON = 1  # (4 D(h) - D(2h)) / 3, D the central difference
COMPLEX = 2  # Im E(w + i h) / h
