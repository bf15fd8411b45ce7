"""Hierarchical gate: a tree of softmax gates (Jordan & Jacobs, 1994)."""

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ._softmax import SoftmaxGate

# A node whose posterior mass is below this fraction of the total weight
# has no data to learn from: it keeps its previous fit (or a uniform split).
_EMPTY_NODE_FRACTION = 1e-10


class HierarchicalGate(BaseEstimator):
    """Tree of softmax gates; the experts are its leaves.

    A balanced tree of depth ``depth`` in which every internal node is a
    linear softmax gate (:class:`~skmoe.SoftmaxGate`) over its
    ``branching`` children; the probability of a leaf is the product of the
    branch probabilities along its path. Leaf ``l`` lies below the nodes
    given by the digits of ``l`` in base ``branching`` (most significant
    first), so experts ``0 .. branching - 1`` share the last parent, and so
    on.

    The M-step (Jordan & Jacobs, 1994) fits each internal node separately:
    its targets are the posterior branch probabilities (the responsibilities
    summed over the leaves below each child, normalised), each row weighted
    by its sample weight times the posterior mass that reaches the node.
    The gate part of EM's expected complete log-likelihood splits into one
    such term per node, so this maximises it exactly.

    Parameters
    ----------
    depth : int, default=2
        Levels of gates.
    branching : int, default=2
        Children per internal node; the tree has ``branching ** depth``
        leaves.
    alpha : float, default=1e-3
        L2 penalty of every node's softmax gate.

    Attributes
    ----------
    nodes_ : list of list of SoftmaxGate
        ``nodes_[level][j]`` is the j-th gate at that level (the root is
        ``nodes_[0][0]``).
    """

    def __init__(self, depth=2, branching=2, alpha=1e-3):
        self.depth = depth
        self.branching = branching
        self.alpha = alpha

    @property
    def n_leaves(self):
        """Number of leaves (experts), ``branching ** depth``."""
        return self.branching**self.depth

    def fit(self, X, resp, sample_weight=None, warm_start=False):
        """Fit every node on its posterior branch probabilities.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        resp : ndarray of shape (n_samples, n_leaves)
            Responsibilities of the leaves (rows sum to one).
        sample_weight : ndarray of shape (n_samples,), default=None
        warm_start : bool, default=False
            Start each node from its current parameters.

        Returns
        -------
        self : HierarchicalGate
        """
        X = np.asarray(X, dtype=np.float64)
        resp = np.asarray(resp, dtype=np.float64)
        n = X.shape[0]
        b = self.branching
        if resp.shape[1] != self.n_leaves:
            raise ValueError(
                f"A hierarchical gate of depth {self.depth} and branching {b} "
                f"has {self.n_leaves} leaves, but there are {resp.shape[1]} "
                "experts."
            )
        sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, float)
        warm = warm_start and hasattr(self, "nodes_")
        if not warm:
            self.nodes_ = [
                [SoftmaxGate(alpha=self.alpha) for _ in range(b**level)]
                for level in range(self.depth)
            ]
        floor = _EMPTY_NODE_FRACTION * sw.sum()
        for level in range(self.depth):
            n_nodes = b**level
            # (n, node, child): posterior mass below each child of each node
            child_mass = resp.reshape(n, n_nodes, b, -1).sum(axis=3)
            node_mass = child_mass.sum(axis=2)
            for j, node in enumerate(self.nodes_[level]):
                mass = node_mass[:, j]
                weight = sw * mass
                fitted = hasattr(node, "coef_")
                if weight.sum() <= floor:
                    if not fitted:
                        # nothing reaches it: a uniform split until data does
                        node.fit(X, np.full((n, b), 1.0 / b), sw)
                    continue
                with np.errstate(invalid="ignore", divide="ignore"):
                    targets = child_mass[:, j] / mass[:, None]
                targets[mass <= 0] = 1.0 / b
                node.fit(X, targets, weight, warm_start=warm and fitted)
        self.n_features_in_ = X.shape[1]
        return self

    def predict_log_proba(self, X):
        """Log leaf probabilities: sums of log branch probabilities on the path.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_leaves)
        """
        check_is_fitted(self)
        X = np.asarray(X, dtype=np.float64)
        log_proba = np.zeros((X.shape[0], 1))
        for gates in self.nodes_:
            branch = np.stack([g.predict_log_proba(X) for g in gates], axis=1)
            log_proba = (log_proba[:, :, None] + branch).reshape(X.shape[0], -1)
        return log_proba

    def predict_proba(self, X):
        """Leaf probabilities: products of branch probabilities on the path.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_leaves)
            Rows sum to one.
        """
        return np.exp(self.predict_log_proba(X))

    def penalty(self):
        """Sum of the nodes' L2 penalties.

        Returns
        -------
        penalty : float
        """
        check_is_fitted(self)
        return float(sum(g.penalty() for gates in self.nodes_ for g in gates))

    def n_parameters(self):
        """Free parameters: ``(n_features + 1) * (branching - 1)`` per node.

        Returns
        -------
        n_parameters : int
        """
        check_is_fitted(self)
        n_nodes = sum(len(gates) for gates in self.nodes_)
        return n_nodes * (self.n_features_in_ + 1) * (self.branching - 1)


def tree_order(centres, branching):
    """Order of clusters that puts clusters close in input space under one node.

    A hierarchical gate splits the input space at each node, so clusters
    given to sibling leaves should be neighbours: the centres are split, level
    by level, into ``branching`` equal groups along their first principal
    direction (PCA-Part, as the k-means start itself). Returns the cluster
    indices in leaf order.
    """
    centres = np.asarray(centres, dtype=float)

    def split(idx):
        if idx.size <= 1:
            return list(idx)
        spread = centres[idx] - centres[idx].mean(axis=0)
        direction = np.linalg.svd(spread, full_matrices=False)[2][0]
        ordered = idx[np.argsort(spread @ direction, kind="stable")]
        size = idx.size // branching
        return [
            leaf
            for part in range(branching)
            for leaf in split(ordered[part * size : (part + 1) * size])
        ]

    return np.array(split(np.arange(len(centres))), dtype=np.intp)
