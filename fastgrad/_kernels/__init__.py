"""Numba kernels: pure functions over a flat parameter vector and a layout table.

Nothing in this package validates input; the Python layer above does.
"""
