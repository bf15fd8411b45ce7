"""The experts' likelihoods: what the EM engine calls to score and fit experts.

A likelihood turns the experts' outputs into ``log p_k(y | x)`` (and the
responsibilities with it), says which target columns the k-means start
clusters, and fits the scale parameters of its family (a Gaussian's noise
variances) in the M-step. The engine never branches on regression against
classification: adding a family is adding a class here.
"""

import numpy as np
from sklearn.utils.multiclass import check_classification_targets

from ._em._stats import linear_expert_means
from ._kernels import (
    gaussian_responsibilities,
    responsibilities,
    weighted_sq_residuals,
)

# Noise variances are floored at this fraction of the target variance, so an
# expert that interpolates its points cannot drive the likelihood to infinity.
_NOISE_FLOOR = 1e-6


def noise_floor(mean, var, mean_square, n_rows):
    """Floor of the experts' noise variances, per output.

    ``mean``, ``var`` and ``mean_square`` are the targets' weighted mean,
    variance and mean square over ``n_rows`` rows.
    """
    # constant y has no spread to take a fraction of: use its scale.
    # A spread within the round-off of the mean (n eps |y|) is none:
    # a floor below it would let residual round-off pick the experts
    roundoff = (n_rows * np.finfo(np.float64).eps) ** 2 * mean_square
    scale = np.where(mean != 0, mean**2, 1.0)
    return _NOISE_FLOOR * np.where(var > roundoff, var, scale)


class GaussianLikelihood:
    """Gaussian experts: ``p_k(y | x) = N(y; f_k(x), diag(noise_variance_[k]))``.

    The likelihood the EM engine calls for a regressor: the experts' outputs
    (their means), the log-densities and responsibilities from them, and the
    M-step of the noise variances (weighted residual spreads, floored).

    Parameters
    ----------
    noise_floor : ndarray of shape (n_outputs,)
        Least noise variance per output (see :func:`noise_floor`).
    y_is_1d : bool
        Whether the user's target was one-dimensional.
    """

    is_classifier = False

    def __init__(self, noise_floor, y_is_1d):
        self.noise_floor = noise_floor
        self.y_is_1d = y_is_1d

    @property
    def n_outputs(self):
        return self.noise_floor.shape[0]

    @classmethod
    def from_targets(cls, y, sample_weight):
        """The likelihood of validated targets, and the targets as (n, n_outputs)."""
        Y = np.asarray(y, dtype=np.float64)
        Y = Y.reshape(-1, 1) if Y.ndim == 1 else Y
        w = sample_weight / sample_weight.sum()
        mean = w @ Y
        floor = noise_floor(mean, w @ (Y - mean) ** 2, w @ Y**2, len(Y))
        return cls(floor, np.ndim(y) == 1), Y

    def encode(self, y):
        """Validated targets of new data, as (n, n_outputs)."""
        Y = np.asarray(y, dtype=np.float64)
        Y = Y.reshape(-1, 1) if Y.ndim == 1 else Y
        if Y.shape[1] != self.n_outputs:
            raise ValueError(
                f"y has {Y.shape[1]} output(s) but the model was fitted on "
                f"{self.n_outputs}."
            )
        return Y

    def check_continues(self, previous):
        """Raise unless a warm start from ``previous``'s fit can go on."""
        if previous.n_outputs != self.n_outputs:
            raise ValueError(
                f"warm_start=True needs targets like the previous fit's: y has "
                f"{self.n_outputs} output(s), the model was fitted on "
                f"{previous.n_outputs}."
            )

    def kmeans_columns(self, Y):
        """Target columns that k-means clusters with the inputs: all of them."""
        return Y

    def outputs(self, experts, X, rows=None):
        """Expert means, shape (n_samples, n_experts, n_outputs).

        ``rows``: per expert, the rows to predict (others stay 0).
        """
        n_outputs = self.n_outputs
        done = []
        if rows is None:
            done, linear_means = linear_expert_means(experts, X, n_outputs)
        if len(done) == len(experts):
            return linear_means
        means = np.zeros((X.shape[0], len(experts), n_outputs))
        if done:
            means[:, done, :] = linear_means
        for k, est in enumerate(experts):
            if k in done:
                continue
            idx = slice(None) if rows is None else rows[k]
            Xk = X[idx]
            if Xk.shape[0]:
                means[idx, k, :] = np.asarray(est.predict(Xk)).reshape(
                    Xk.shape[0], n_outputs
                )
        return means

    def m_step_scale(self, Y, means, weights, stats=None):
        """Noise variances: weighted residual spreads, floored; (K, n_outputs).

        ``stats``: the experts' :class:`ClosedFormStats`, whose Gram
        matrices hold the residual spreads already (no pass over the rows).
        """
        if stats is not None:
            return np.maximum(stats.variances, self.noise_floor)
        sq_resid, n_eff = weighted_sq_residuals(Y, means, weights)
        return np.maximum(sq_resid / n_eff[:, None], self.noise_floor)

    def posterior(self, log_gate, means, Y, scale):
        """Responsibilities and per-row log-likelihoods."""
        # one pass, without the (n, K) log-densities
        return gaussian_responsibilities(log_gate, Y, means, scale)

    def scale_of(self, estimator):
        """A fitted estimator's noise variances, (n_experts, n_outputs)."""
        return estimator.noise_variance_.reshape(estimator.n_experts_, -1)

    def n_scale_parameters(self, estimator):
        return int(estimator.noise_variance_.size)

    def fitted_attributes(self, scale):
        """The fitted attributes that hold ``scale``, and this likelihood."""
        return {
            "noise_variance_": scale[:, 0] if self.y_is_1d else scale,
            "_likelihood": self,
        }


# Expert probabilities are floored here in the likelihood: a tree leaf that
# never saw a class gives it probability 0, which would make log p = -inf.
_PROBA_FLOOR = 1e-12


class CategoricalLikelihood:
    """Classification experts: ``p_k(y | x)``, expert k's ``predict_proba``.

    The likelihood the EM engine calls for a classifier: the experts' class
    probabilities aligned to the full ``classes_`` (an expert whose weighted
    data lacked a class gives it 0), their log at each row's label (floored:
    a tree leaf that never saw a class would make it -inf), and no scale
    parameters.

    Parameters
    ----------
    classes : ndarray of shape (n_classes,)
    """

    is_classifier = True
    y_is_1d = True

    def __init__(self, classes):
        self.classes = classes

    @classmethod
    def from_targets(cls, y, sample_weight):
        """The likelihood of validated labels, and their codes."""
        check_classification_targets(y)
        classes, codes = np.unique(y, return_inverse=True)
        # rows of zero weight are left out: their labels do not count
        present = np.unique(codes[sample_weight > 0])
        if present.size < 2:
            raise ValueError(
                "The classifier needs samples of at least 2 classes in the "
                f"data, but the data contains only one class: "
                f"{classes[present[0]]!r}."
            )
        return cls(classes), codes

    def encode(self, y):
        """Label codes of new labels; unknown labels raise."""
        codes = np.searchsorted(self.classes, y)
        codes = np.clip(codes, 0, self.classes.size - 1)
        unknown = self.classes[codes] != y
        if np.any(unknown):
            raise ValueError(
                f"y contains labels not seen in fit: {np.unique(y[unknown])!r}."
            )
        return codes

    def check_continues(self, previous):
        """Raise unless a warm start from ``previous``'s fit can go on."""
        if not np.array_equal(previous.classes, self.classes):
            raise ValueError(
                "warm_start=True needs the classes of the previous fit, "
                f"{previous.classes.tolist()!r}; y has {self.classes.tolist()!r}."
            )

    def kmeans_columns(self, Y):
        """None: k-means clusters the inputs alone.

        Clusters split by label would make class-pure experts that a gate
        over x cannot tell apart.
        """
        return np.empty((Y.shape[0], 0))

    def outputs(self, experts, X, rows=None):
        """Expert class probabilities on the full ``classes_``,
        shape (n_samples, n_experts, n_classes)."""
        n_classes = self.classes.size
        proba = np.zeros((X.shape[0], len(experts), n_classes))
        for k, est in enumerate(experts):
            idx = slice(None) if rows is None else rows[k]
            Xk = X[idx]
            if Xk.shape[0]:
                # experts were fitted on label codes: est.classes_ indexes ours
                aligned = np.zeros((Xk.shape[0], n_classes))
                aligned[:, np.asarray(est.classes_, dtype=np.intp)] = est.predict_proba(
                    Xk
                )
                proba[idx, k, :] = aligned
        return proba

    def m_step_scale(self, Y, outputs, weights, stats=None):
        """No scale parameters."""
        return None

    def log_prob(self, outputs, Y, scale=None):
        """log p_k(y_i | x_i), shape (n_samples, n_experts)."""
        p = np.take_along_axis(outputs, Y[:, None, None], axis=2)[:, :, 0]
        return np.log(np.maximum(p, _PROBA_FLOOR))

    def posterior(self, log_gate, outputs, Y, scale=None):
        """Responsibilities and per-row log-likelihoods."""
        return responsibilities(log_gate, self.log_prob(outputs, Y))

    def posterior_from_log_label(self, log_gate, log_label):
        """:meth:`posterior` from the labels' log-probabilities ``log p_k(y_i)``."""
        return responsibilities(log_gate, np.maximum(log_label, np.log(_PROBA_FLOOR)))

    def scale_of(self, estimator):
        return None

    def n_scale_parameters(self, estimator):
        return 0

    def fitted_attributes(self, scale):
        """``classes_``, and this likelihood."""
        return {"classes_": self.classes, "_likelihood": self}
