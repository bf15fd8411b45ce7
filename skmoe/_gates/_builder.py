"""Building an estimator's gate from its parameters: kind, inputs, penalties."""

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from .._sparse import is_sparse
from ._hierarchical import HierarchicalGate
from ._mlp import SoftmaxMLPGate
from ._softmax import SoftmaxGate


def resolve_gate_features(gate_features, n_features, feature_names=None):
    """Column indices the gate sees, from the ``gate_features`` parameter.

    Parameters
    ----------
    gate_features : None, array-like of int, of bool, or of str
        None (every column), column indices, a boolean mask over the
        columns, or column names (when X had names at fit).
    n_features : int
    feature_names : ndarray of str or None
        ``feature_names_in_`` of the estimator.

    Returns
    -------
    columns : ndarray of int or None
        None when the gate sees every column.
    """
    if gate_features is None:
        return None
    values = np.asarray(gate_features)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(
            "gate_features must be a non-empty 1-D list of column indices, a "
            f"boolean mask or column names; got {gate_features!r}."
        )
    if values.dtype.kind == "b":
        if values.size != n_features:
            raise ValueError(
                f"gate_features as a boolean mask has {values.size} entries, "
                f"but X has {n_features} features."
            )
        columns = np.flatnonzero(values)
        if columns.size == 0:
            raise ValueError("gate_features selects no column; the gate needs one.")
        return columns
    if values.dtype.kind in "iu":
        bad = values[(values < 0) | (values >= n_features)]
        if bad.size:
            raise ValueError(
                f"gate_features has column index(es) {bad.tolist()} out of range "
                f"for X with {n_features} features."
            )
        columns = values.astype(np.intp)
    elif values.dtype.kind in "UO":
        if feature_names is None:
            raise ValueError(
                "gate_features names columns, but X has no column names; fit "
                "on a DataFrame or give column indices."
            )
        names = [str(v) for v in values]
        where = {str(name): i for i, name in enumerate(feature_names)}
        unknown = [name for name in names if name not in where]
        if unknown:
            raise ValueError(
                f"gate_features names unknown column(s) {unknown}; X has "
                f"{list(map(str, feature_names))}."
            )
        columns = np.array([where[name] for name in names], dtype=np.intp)
    else:
        raise ValueError(
            "gate_features must hold column indices, booleans or column names; "
            f"got values of dtype {values.dtype}."
        )
    if np.unique(columns).size != columns.size:
        raise ValueError(f"gate_features repeats a column: {gate_features!r}.")
    return columns


def gate_n_parameters(gate):
    """Free parameters of a fitted gate.

    Gates with their own count (``n_parameters()``) give it; a linear
    softmax gate has ``(n_inputs + 1) * (n_experts - 1)``.
    """
    if hasattr(gate, "n_parameters"):
        return int(gate.n_parameters())
    d, K = gate.coef_.shape
    return (d + 1) * (K - 1)


class ColumnSubsetGate(BaseEstimator):
    """A gate that sees only some columns of X (flexmix's concomitant variables).

    Parameters
    ----------
    gate : gate object
        The gate fitted on ``X[:, features]``; cloned at a cold fit.
    features : ndarray of int
        Column indices the gate sees.

    Attributes
    ----------
    gate_ : gate object
        The fitted inner gate.
    features_ : ndarray of int
        The columns it sees, in order (rows of ``coef_``).
    """

    def __init__(self, gate, features):
        self.gate = gate
        self.features = features

    def fit(self, X, resp, sample_weight=None, warm_start=False):
        """Fit the inner gate on the chosen columns.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        resp : ndarray of shape (n_samples, n_experts)
        sample_weight : ndarray of shape (n_samples,), default=None
        warm_start : bool, default=False

        Returns
        -------
        self : ColumnSubsetGate
        """
        if not (warm_start and hasattr(self, "gate_")):
            self.gate_ = clone(self.gate)
        self.features_ = np.asarray(self.features, dtype=np.intp)
        X = X if is_sparse(X) else np.asarray(X, dtype=np.float64)
        self.gate_.fit(X[:, self.features_], resp, sample_weight, warm_start)
        return self

    def predict_log_proba(self, X):
        """Log gate probabilities, shape (n_samples, n_experts)."""
        check_is_fitted(self)
        X = X if is_sparse(X) else np.asarray(X, dtype=np.float64)
        return self.gate_.predict_log_proba(X[:, self.features_])

    def predict_proba(self, X):
        """Gate probabilities, shape (n_samples, n_experts)."""
        return np.exp(self.predict_log_proba(X))

    def penalty(self):
        """The inner gate's penalty."""
        check_is_fitted(self)
        return self.gate_.penalty()

    def n_parameters(self):
        """The inner gate's free parameters (on the chosen columns only)."""
        check_is_fitted(self)
        return gate_n_parameters(self.gate_)

    @property
    def coef_(self):
        """The inner gate's ``coef_``: one row per chosen column."""
        return self.gate_.coef_

    @property
    def intercept_(self):
        """The inner gate's ``intercept_``."""
        return self.gate_.intercept_


def build_gate(estimator, n_experts, n_features, feature_names, seed):
    """The unfitted gate an estimator's parameters ask for.

    Parameters
    ----------
    estimator : BaseMixtureOfExperts
        Read for ``gate``, ``gate_alpha``, ``gate_hidden_layer_sizes``,
        ``gate_features``, ``gate_load_balance``, ``gate_depth`` and
        ``gate_branching``.
    n_experts : int
    n_features : int
    feature_names : ndarray or None
    seed : int
        Seeds the initial weights of a gating network.

    Returns
    -------
    gate : gate object
    """
    kind = estimator.gate
    alpha = estimator.gate_alpha
    load_balance = float(getattr(estimator, "gate_load_balance", 0.0))
    if kind == "hierarchical":
        depth, branching = estimator.gate_depth, estimator.gate_branching
        if branching**depth != n_experts:
            raise ValueError(
                f"gate='hierarchical' with gate_depth={depth} and "
                f"gate_branching={branching} has {branching**depth} leaves, one "
                f"per expert, but there are {n_experts} experts; set "
                f"n_experts={branching**depth} (or change the tree)."
            )
        if load_balance > 0:
            raise ValueError(
                "gate_load_balance is not available with gate='hierarchical' "
                "(each node is fitted separately); use gate='linear' or 'mlp'."
            )
        gate = HierarchicalGate(depth=depth, branching=branching, alpha=alpha)
    elif kind == "mlp":
        sizes = estimator.gate_hidden_layer_sizes
        sizes = tuple(np.atleast_1d(sizes).tolist())
        if len(sizes) == 0 or not all(isinstance(s, int) and s >= 1 for s in sizes):
            raise ValueError(
                "gate_hidden_layer_sizes must be a non-empty tuple of positive "
                f"integers, got {estimator.gate_hidden_layer_sizes!r}."
            )
        gate = SoftmaxMLPGate(
            hidden_layer_sizes=sizes,
            alpha=alpha,
            load_balance=load_balance,
            random_state=seed,
        )
    elif load_balance > 0:
        # the same linear softmax, with the penalty in its objective
        gate = SoftmaxMLPGate(
            hidden_layer_sizes=(), alpha=alpha, load_balance=load_balance
        )
    else:
        # the gate's Newton steps stop once they predict a gain below its
        # tol; below EM's own tol, or the gate freezes before EM stops (at
        # EM tol=1e-12 the Poisson fits of benchmarks/flexmix_refit.py ended
        # 1e-4 below flexmix's log-likelihood)
        tol = min(SoftmaxGate().tol, 0.01 * float(getattr(estimator, "tol", 1e-6)))
        gate = SoftmaxGate(alpha=alpha, tol=tol)
    columns = resolve_gate_features(
        getattr(estimator, "gate_features", None), n_features, feature_names
    )
    if columns is not None:
        gate = ColumnSubsetGate(gate, columns)
    return gate
