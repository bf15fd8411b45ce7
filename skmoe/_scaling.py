"""The weighted standardisation of columns, shared by the gates, the logistic
experts and gradient training (the Array API backend computes the same on
its device, with a float32 bound of its own)."""

import numpy as np

from ._sparse import is_sparse, sparse_standardisation


def unit_scale_for_constant(mean, std):
    """``std`` with the constant columns' scale set to 1.

    A column whose spread is at most 1e-12 of its magnitude is constant to
    round-off and keeps scale 1. The bound is relative: an absolute floor
    also caught inputs whose whole scale is tiny (at X * 1e-15 the gates
    stopped routing) and broke the fits' equivariance to rescaling.
    """
    std = np.array(std, dtype=np.float64)
    std[~(std > 1e-12 * np.abs(mean))] = 1.0
    return std


def weighted_standardisation(X, sample_weight):
    """``(mean, scale)`` of the columns of ``X`` under ``sample_weight``."""
    if is_sparse(X):
        mean, var = sparse_standardisation(X, sample_weight)
        return mean, unit_scale_for_constant(mean, np.sqrt(var))
    w = sample_weight / sample_weight.sum()
    mean = w @ X
    return mean, unit_scale_for_constant(mean, np.sqrt(w @ (X - mean) ** 2))
