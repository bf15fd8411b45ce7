"""A softmax gating network with hidden layers, fitted on soft targets.

scikit-learn's MLPClassifier trains on hard labels only, while the gate's
M-step needs soft targets (the responsibilities) with row weights, warm
starts across EM iterations and an extra penalty on the mean gate usage;
hence this small hand-written network: its objective and an L-BFGS over it
in one numba kernel (scipy's L-BFGS-B with the NumPy objective where numba
is disabled, and with the load-balancing penalty, written in NumPy).
"""

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._kernels import (
    gate_loss,
    log_softmax,
    mlp_gate_minimize,
    mlp_gate_objective,
)
from .._scaling import weighted_standardisation
from ._solvers import lbfgs_minimize


def load_balance_penalty(gate_proba, sample_weight, weight):
    """Load-balancing penalty on the mean gate usage, and its logit gradient.

    ``P = weight * W * KL(u || gbar)`` with ``gbar = sum_i w_i g_i / W`` the
    weighted mean gate over the rows, ``W = sum_i w_i`` and ``u`` uniform:
    ``KL(u || gbar) = -log K - mean_k log gbar_k``. It is zero at uniform
    usage and grows without bound as an expert's usage goes to zero, so it
    keeps the gate from starving an expert (a collapse), and it equals the
    log-likelihood of ``weight * W / K`` pseudo-rows per expert at the mean
    gate, on the scale of the data log-likelihood. The squared-usage form of
    sparse MoE layers (``K sum_k f_k P_k``) needs the hard routing fractions
    ``f_k`` (not differentiable) and stays bounded as an expert dies.

    Parameters
    ----------
    gate_proba : ndarray of shape (n_samples, n_experts)
    sample_weight : ndarray of shape (n_samples,)
    weight : float

    Returns
    -------
    penalty : float
    dlogits : ndarray of shape (n_samples, n_experts)
        Gradient of the penalty in the gate's logits.
    """
    K = gate_proba.shape[1]
    total = sample_weight.sum()
    mean_gate = np.maximum(sample_weight @ gate_proba / total, np.finfo(float).tiny)
    penalty = weight * total * (-np.log(K) - np.mean(np.log(mean_gate)))
    # dP/dlogit_ij = -(weight / K) w_i g_ij (1 / gbar_j - sum_k g_ik / gbar_k)
    ratio = gate_proba / mean_gate
    dlogits = (
        -(weight / K)
        * sample_weight[:, None]
        * (ratio - gate_proba * ratio.sum(axis=1, keepdims=True))
    )
    return float(penalty), dlogits


class SoftmaxMLPGate(BaseEstimator):
    """Softmax gate computed by a small neural network (tanh hidden layers).

    ``g(x) = softmax(f(x))`` with ``f`` a multilayer perceptron on the
    standardised inputs; with no hidden layers it is the linear softmax
    gate. The output layer uses expert 0 as the reference category (its
    logit is zero), as :class:`~skmoe.SoftmaxGate` does. Fitted by
    L-BFGS on the weighted soft-target cross-entropy, plus an L2 penalty on
    the weights (not the biases) and, optionally, a load-balancing penalty
    (see :func:`load_balance_penalty`). A warm fit continues from the current
    weights, so EM's refits are cheap and the penalised objective never
    increases; the problem is not convex with hidden layers, so the cold
    fit depends on ``random_state``.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(16,)
        Units per hidden layer; ``()`` gives a linear softmax gate.
    alpha : float, default=1e-3
        L2 penalty on the weights (in the standardised input scale), added
        to the summed weighted cross-entropy.
    load_balance : float, default=0.0
        Weight of the load-balancing penalty.
    max_iter : int, default=200
        Most L-BFGS iterations per fit.
    tol : float, default=1e-8
        L-BFGS tolerance on the relative decrease of the mean loss.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights of a cold fit (Glorot uniform).

    Attributes
    ----------
    coefs_ : list of ndarray
        Weight matrices, layer by layer, in the scale of the inputs (the
        standardisation is folded into the first layer); the last one has
        shape (n_units, n_experts) with column 0 zero.
    intercepts_ : list of ndarray
        Bias vectors, layer by layer; the last one has entry 0 zero.
    coef_, intercept_ : ndarray
        With no hidden layers only: ``coefs_[0]`` and ``intercepts_[0]``.
    n_iter_ : int
        L-BFGS iterations of the last fit.
    """

    def __init__(
        self,
        hidden_layer_sizes=(16,),
        alpha=1e-3,
        load_balance=0.0,
        max_iter=200,
        tol=1e-8,
        random_state=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.load_balance = load_balance
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    # Parameters live in one flat vector over the standardised inputs; the
    # layer shapes are (fan_in + 1, fan_out): weights, then the bias row.

    def _shapes(self, n_features, n_experts):
        sizes = [n_features, *self._check_hidden_layer_sizes(), n_experts - 1]
        return [(a + 1, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]

    def _unpack(self, flat):
        layers, start = [], 0
        for shape in self._layer_shapes:
            stop = start + shape[0] * shape[1]
            layers.append(flat[start:stop].reshape(shape))
            start = stop
        return layers

    def _forward(self, Xs, layers):
        """Hidden activations (input included) and the full logits."""
        activations = [Xs]
        a = Xs
        for layer in layers[:-1]:
            a = np.tanh(a @ layer[:-1] + layer[-1])
            activations.append(a)
        out = layers[-1]
        logits = np.zeros((Xs.shape[0], out.shape[1] + 1))
        logits[:, 1:] = a @ out[:-1] + out[-1]
        return activations, logits

    def _objective(self, flat, Xs, resp, sw):
        """Penalised loss (summed over rows) and its gradient in ``flat``."""
        alpha = float(self.alpha)
        if not self.load_balance > 0:
            # the network's passes in one kernel (numba, or its NumPy twin):
            # NumPy's per-call overhead on a gate's small arrays was most of
            # an evaluation (180 against 43 us on 133 rows and 16 units)
            return mlp_gate_objective(flat, self._layer_shapes, Xs, resp, sw, alpha)
        layers = self._unpack(flat)
        activations, logits = self._forward(Xs, layers)
        loss, dlogits = gate_loss(logits, resp, sw)
        gate = np.exp(log_softmax(logits))
        lb, dlb = load_balance_penalty(gate, sw, float(self.load_balance))
        loss += lb
        dlogits = dlogits + dlb
        grads = [None] * len(layers)
        delta = dlogits[:, 1:]
        for j in range(len(layers) - 1, -1, -1):
            W = layers[j][:-1]
            a = activations[j]
            grad = np.empty_like(layers[j])
            grad[:-1] = a.T @ delta + alpha * W
            grad[-1] = delta.sum(axis=0)
            grads[j] = grad
            loss += 0.5 * alpha * np.sum(W * W)
            if j > 0:
                # tanh' = 1 - tanh^2
                delta = (delta @ W.T) * (1.0 - a * a)
        return loss, np.concatenate([g.ravel() for g in grads])

    def _init_scaler(self, X, sw):
        self._mean, self._scale = weighted_standardisation(X, sw)

    def _init_weights(self, rng):
        parts = []
        for rows, cols in self._layer_shapes:
            if len(self._layer_shapes) == 1:
                # linear softmax: convex, start from the uniform gate
                parts.append(np.zeros(rows * cols))
                continue
            fan_in = rows - 1
            bound = np.sqrt(6.0 / (fan_in + cols))
            layer = np.zeros((rows, cols))
            layer[:-1] = rng.uniform(-bound, bound, size=(fan_in, cols))
            parts.append(layer.ravel())
        return np.concatenate(parts) if parts else np.zeros(0)

    def _check_hidden_layer_sizes(self):
        sizes = tuple(np.atleast_1d(self.hidden_layer_sizes).tolist())
        if not all(isinstance(s, int) and s >= 1 for s in sizes):
            raise ValueError(
                "hidden_layer_sizes must be positive integers, got "
                f"{self.hidden_layer_sizes!r}."
            )
        return sizes

    def fit(self, X, resp, sample_weight=None, warm_start=False):
        """Fit the gate on soft targets.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        resp : ndarray of shape (n_samples, n_experts)
            Target probabilities per row (rows sum to one).
        sample_weight : ndarray of shape (n_samples,), default=None
        warm_start : bool, default=False
            Start from the current weights when they fit the shapes.

        Returns
        -------
        self : SoftmaxMLPGate
        """
        X = np.asarray(X, dtype=np.float64)
        resp = np.asarray(resp, dtype=np.float64)
        n, d = X.shape
        K = resp.shape[1]
        sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, float)
        shapes = self._shapes(d, K)
        warm = (
            warm_start
            and hasattr(self, "_flat")
            and getattr(self, "_layer_shapes", None) == shapes
        )
        self._layer_shapes = shapes
        if not warm:
            self._init_scaler(X, sw)
            self._flat = self._init_weights(check_random_state(self.random_state))
        Xs = (X - self._mean) / self._scale
        if K > 1 and not self.load_balance > 0:
            # the whole L-BFGS in one kernel: EM's warm M-steps on a small
            # gate take thousands of iterations, and scipy's cost 3x the
            # evaluation in Python around it
            self._flat, self.n_iter_ = mlp_gate_minimize(
                self._flat,
                self._layer_shapes,
                Xs,
                resp,
                sw,
                float(self.alpha),
                max_iter=self.max_iter,
                tol=self.tol,
            )
        elif K > 1:
            total = sw.sum()

            def objective(flat):
                loss, grad = self._objective(flat, Xs, resp, sw)
                # mean scale keeps L-BFGS tolerances independent of n
                return loss / total, grad / total

            self._flat, self.n_iter_ = lbfgs_minimize(
                objective, self._flat, max_iter=self.max_iter, tol=self.tol
            )
        else:
            self.n_iter_ = 0
        self._penalty_value = self._penalty_at(self._flat, Xs, sw)
        self._set_public()
        return self

    def _penalty_at(self, flat, Xs, sw):
        layers = self._unpack(flat)
        penalty = 0.5 * float(self.alpha) * sum(np.sum(L[:-1] ** 2) for L in layers)
        if self.load_balance > 0 and layers[-1].shape[1] > 0:
            gate = np.exp(log_softmax(self._forward(Xs, layers)[1]))
            penalty += load_balance_penalty(gate, sw, float(self.load_balance))[0]
        return float(penalty)

    def _set_public(self):
        layers = self._unpack(self._flat)
        coefs, intercepts = [], []
        for j, layer in enumerate(layers):
            W, b = layer[:-1], layer[-1]
            if j == 0:
                # fold the standardisation in: (x - m) / s @ W = x @ (W / s) - ...
                b = b - (self._mean / self._scale) @ W
                W = W / self._scale[:, None]
            coefs.append(W.copy())
            intercepts.append(np.array(b, dtype=float))
        last_W, last_b = coefs[-1], intercepts[-1]
        coefs[-1] = np.hstack([np.zeros((last_W.shape[0], 1)), last_W])
        intercepts[-1] = np.r_[0.0, last_b]
        self.coefs_, self.intercepts_ = coefs, intercepts
        if len(coefs) == 1:
            self.coef_, self.intercept_ = coefs[0], intercepts[0]

    def penalty(self):
        """L2 plus load-balancing penalty at the end of the last fit.

        The load-balancing part depends on the training rows, so it is the
        value on the rows of the last :meth:`fit`, which is what EM monitors.

        Returns
        -------
        penalty : float
        """
        check_is_fitted(self)
        return self._penalty_value

    def n_parameters(self):
        """Free parameters: every weight and bias (expert 0's logit is fixed).

        Returns
        -------
        n_parameters : int
        """
        check_is_fitted(self)
        return int(self._flat.size)

    def predict_log_proba(self, X):
        """Log gate probabilities.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_experts)
        """
        check_is_fitted(self)
        a = np.asarray(X, dtype=np.float64)
        for W, b in zip(self.coefs_[:-1], self.intercepts_[:-1], strict=True):
            a = np.tanh(a @ W + b)
        return log_softmax(a @ self.coefs_[-1] + self.intercepts_[-1])

    def predict_proba(self, X):
        """Gate probabilities.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_experts)
            Rows sum to one.
        """
        return np.exp(self.predict_log_proba(X))
