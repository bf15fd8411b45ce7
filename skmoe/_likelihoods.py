"""The experts' likelihoods: what the EM engine calls to score and fit experts.

A likelihood turns the experts' outputs into ``log p_k(y | x)`` (and the
responsibilities with it), says which target columns the k-means start
clusters, and fits the scale parameters of its family (a Gaussian's noise
variances) in the M-step. The engine never branches on regression against
classification: adding a family is adding a class here (Gaussian,
Poisson and Gamma experts for a regressor, see :data:`FAMILIES`; a
categorical one for a classifier).
"""

import numpy as np
from scipy.special import digamma, gammaln, polygamma, xlogy
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from ._em._stats import linear_expert_means
from ._kernels import (
    gaussian_responsibilities,
    responsibilities,
    weighted_sq_residuals,
)
from ._predictive import GammaMixture, GaussianMixture, PoissonMixture

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


def expert_means(experts, X, n_outputs, rows=None):
    """Regression experts' predictions, shape (n_samples, n_experts, n_outputs).

    ``rows``: per expert, the rows to predict (others stay 0). Linear
    experts are predicted together (see ``linear_expert_means``).
    """
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


def check_same_family(previous, likelihood):
    """Raise unless a warm start continues a fit of the same family."""
    before = getattr(previous, "family", None)
    if before != likelihood.family:
        raise ValueError(
            f"warm_start=True needs the family of the previous fit, {before!r}; "
            f"got family={likelihood.family!r}. Fit the new family from a fresh "
            "start (warm_start=False)."
        )


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
    family = "gaussian"
    # the weighted Gram matrices of linear experts are sufficient statistics
    # of this likelihood's M-step: the engine may fuse it into one pass
    gram_sufficient = True

    def __init__(self, noise_floor, y_is_1d):
        self.noise_floor = noise_floor
        self.y_is_1d = y_is_1d

    @property
    def n_outputs(self):
        return self.noise_floor.shape[0]

    @classmethod
    def from_targets(cls, y, sample_weight, names=None):
        """The likelihood of validated targets, and the targets as (n, n_outputs).

        ``names`` (the experts', for other families' messages) is not used.
        """
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
        check_same_family(previous, self)
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
        return expert_means(experts, X, self.n_outputs, rows)

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

    def component_variance(self, means, scale):
        """Each expert's predictive variance, broadcastable to ``means``."""
        return scale[None]

    def mixture(self, weights, means, scale, output):
        """The predictive mixture of output ``output`` (a GaussianMixture)."""
        stds = np.array(np.broadcast_to(np.sqrt(scale[:, output]), means.shape))
        return GaussianMixture(weights, means, stds)

    def fitted_attributes(self, scale):
        """The fitted attributes that hold ``scale``, and this likelihood.

        ``shape_`` (a Gamma fit's) is removed.
        """
        return {
            "noise_variance_": scale[:, 0] if self.y_is_1d else scale,
            "shape_": None,
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
    gram_sufficient = False
    # the floor of the labels' log-probabilities, for kernels that apply it
    log_label_floor = float(np.log(_PROBA_FLOOR))

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
                # an expert's arithmetic can overflow at rows far from those
                # it was fitted on (GaussianNB, at a row of zero weight for
                # it, squares the distance over tiny variances): its nan
                # there counts as no probability (log_prob), and predict's
                # check of the outputs names the expert and the row
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    aligned[:, np.asarray(est.classes_, dtype=np.intp)] = (
                        est.predict_proba(Xk)
                    )
                proba[idx, k, :] = aligned
        return proba

    def m_step_scale(self, Y, outputs, weights, stats=None):
        """No scale parameters."""
        return None

    def log_prob(self, outputs, Y, scale=None):
        """log p_k(y_i | x_i), shape (n_samples, n_experts)."""
        p = np.take_along_axis(outputs, Y[:, None, None], axis=2)[:, :, 0]
        # fmax: a nan probability (see outputs) is the floor, not nan
        return np.log(np.fmax(p, _PROBA_FLOOR))

    def posterior(self, log_gate, outputs, Y, scale=None):
        """Responsibilities and per-row log-likelihoods."""
        return responsibilities(log_gate, self.log_prob(outputs, Y))

    def posterior_from_log_label(self, log_gate, log_label):
        """:meth:`posterior` from the labels' log-probabilities ``log p_k(y_i)``."""
        return responsibilities(log_gate, np.maximum(log_label, self.log_label_floor))

    def scale_of(self, estimator):
        return None

    def n_scale_parameters(self, estimator):
        return 0

    def fitted_attributes(self, scale):
        """``classes_``, and this likelihood."""
        return {"classes_": self.classes, "_likelihood": self}


# -- the GLM families of a regressor: one target, experts predict its mean


def _one_target(y, family):
    """``y`` as a 1-D float array, or a ValueError for several outputs.

    A column vector is raveled with scikit-learn's DataConversionWarning, as
    single-output estimators do.
    """
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 2 and y.shape[1] != 1 or y.ndim > 2:
        raise ValueError(
            f"family={family!r} models one target per row; y has shape "
            f"{y.shape}. Fit one model per output, or use family='gaussian' for "
            "multi-output targets."
        )
    return column_or_1d(y, warn=True)


def check_family_targets(family, y):
    """``y`` as a 1-D float array after the checks of ``family``, or a ValueError.

    Poisson targets are counts, ``y >= 0`` (non-integers are accepted, as
    :class:`~sklearn.linear_model.PoissonRegressor` accepts them for
    frequencies); Gamma targets are positive, ``y > 0``. Gaussian targets
    are returned as they are.
    """
    if family == "gaussian":
        return np.asarray(y, dtype=np.float64)
    return FAMILIES[family].check_targets(y)


class _GLMLikelihood:
    """What the Poisson and Gamma likelihoods share.

    One target per row (kept as a column, (n, 1), as the engine holds
    targets), experts that predict its mean, which must be positive: a mean
    that is not gives a ValueError naming the expert (not a NaN
    log-likelihood).

    Parameters
    ----------
    names : list of str
        The experts' names, for the messages.
    """

    is_classifier = False
    y_is_1d = True
    n_outputs = 1
    gram_sufficient = False
    family = None
    # the experts suggested in the messages
    suggested = ""

    def __init__(self, names):
        self.names = list(names)

    @classmethod
    def check_targets(cls, y):
        """Targets as a 1-D array, checked (see :func:`check_family_targets`)."""
        y = _one_target(y, cls.family)
        cls._check_range(y)
        return y

    def encode(self, y):
        """Validated targets of new data, as (n, 1)."""
        return self.check_targets(y)[:, None]

    def check_continues(self, previous):
        """Raise unless a warm start from ``previous``'s fit can go on."""
        check_same_family(previous, self)

    def _refuse_means(self, means, bad, need, experts=None):
        """The ValueError for the first expert with a mean in ``bad``."""
        k = int(np.flatnonzero(bad.any(axis=0))[0])
        rows = np.flatnonzero(bad[:, k])
        name = self.names[k] if k < len(self.names) else f"expert{k}"
        kind = "" if experts is None else f" ({type(experts[k]).__name__})"
        return ValueError(
            f"Expert {name!r}{kind} predicts a mean of "
            f"{means[rows[0], k]:.6g} at {rows.size} row(s) of X (the first: row "
            f"{rows[0]}): family={self.family!r} needs {need}. Use experts whose "
            f"predictions are, such as {self.suggested}."
        )

    def outputs(self, experts, X, rows=None):
        """Expert means, shape (n_samples, n_experts, 1); ValueError where one
        is not a valid mean of the family."""
        means = expert_means(experts, X, 1, rows)
        computed = np.ones(means.shape[:2], dtype=bool)
        if rows is not None:
            computed[:] = False
            for k, idx in enumerate(rows):
                computed[idx, k] = True
        bad = computed & self._bad_mean(means[:, :, 0])
        if bad.any():
            raise self._refuse_means(means[:, :, 0], bad, self.mean_rule, experts)
        return means

    def kmeans_columns(self, Y):
        """The targets on the log scale of the experts' link.

        k-means then separates regions where log-linear experts differ;
        raw counts or skewed targets would let the largest values pick the
        clusters.
        """
        return self._log_scale(Y)

    def posterior(self, log_gate, means, Y, scale=None):
        """Responsibilities and per-row log-likelihoods."""
        return responsibilities(log_gate, self.log_prob(means, Y, scale))

    def mixture(self, weights, means, scale, output):
        """The predictive mixture of the target, from the experts' means."""
        return self._mixture(weights, means, scale)


class PoissonLikelihood(_GLMLikelihood):
    """Poisson experts: ``p_k(y | x) = Poisson(y; f_k(x))``, no scale parameter.

    ``log p = y log mu - mu - log(y!)``, with ``log(y!) = gammaln(y + 1)``:
    for non-integer ``y >= 0`` (frequencies, as
    :class:`~sklearn.linear_model.PoissonRegressor` takes them) the same
    formula, a quasi-likelihood. Expert means must be >= 0. A mean of 0 is
    Poisson(0), all its mass at 0: an expert whose rows are all zeros (a
    zero-inflation component; PoissonRegressor's intercept is then -inf)
    gives a positive count probability 0, and the other experts explain
    it; a positive count that every expert gives probability 0 raises.
    """

    family = "poisson"
    mean_rule = "means >= 0"
    suggested = (
        "PoissonRegressor, HistGradientBoostingRegressor(loss='poisson') or "
        "DecisionTreeRegressor(criterion='poisson')"
    )

    @staticmethod
    def _check_range(y):
        negative = y < 0
        if negative.any():
            raise ValueError(
                f"family='poisson' needs counts, y >= 0; y has "
                f"{int(negative.sum())} negative value(s) (the least: "
                f"{y.min():.6g})."
            )

    @classmethod
    def from_targets(cls, y, sample_weight, names=()):
        """The likelihood of validated targets, and the targets as (n, 1)."""
        y = cls.check_targets(y)
        if not np.any((y > 0) & (sample_weight > 0)):
            raise ValueError(
                "family='poisson' needs some positive counts: every y of "
                "positive weight is 0, whose Poisson mean 0 no log-linear "
                "expert reaches."
            )
        return cls(names), y[:, None]

    @staticmethod
    def _bad_mean(means):
        return means < 0

    @staticmethod
    def _log_scale(Y):
        return np.log1p(Y)

    def log_prob(self, means, Y, scale=None):
        """log p_k(y_i | x_i), shape (n_samples, n_experts); -inf where an
        expert's mean is 0 and ``y > 0``."""
        mu, y = means[:, :, 0], Y[:, 0]
        with np.errstate(divide="ignore"):
            return xlogy(y[:, None], mu) - mu - gammaln(y + 1.0)[:, None]

    def posterior(self, log_gate, means, Y, scale=None):
        """Responsibilities and per-row log-likelihoods.

        A positive count where every expert's mean is 0 has probability 0
        under the mixture: a ValueError, not a log-likelihood of -inf.
        """
        log_prob = self.log_prob(means, Y)
        impossible = np.all(np.isneginf(log_prob), axis=1)
        if impossible.any():
            rows = np.flatnonzero(impossible)
            raise ValueError(
                f"Every expert ({', '.join(map(repr, self.names))}) predicts a "
                f"mean of 0 at {rows.size} row(s) where y > 0 (the first: row "
                f"{rows[0]}, y = {Y[rows[0], 0]:.6g}): family='poisson' needs "
                "a mean > 0 from some expert where y > 0. Use experts whose "
                f"predictions are positive, such as {self.suggested}."
            )
        return responsibilities(log_gate, log_prob)

    def m_step_scale(self, Y, means, weights, stats=None):
        """No scale parameters."""
        return None

    def scale_of(self, estimator):
        return None

    def n_scale_parameters(self, estimator):
        return 0

    def component_variance(self, means, scale):
        """A Poisson's variance is its mean."""
        return means

    def _mixture(self, weights, means, scale):
        return PoissonMixture(weights, means)

    def fitted_attributes(self, scale):
        """No scale attribute (``noise_variance_`` and ``shape_`` removed)."""
        return {"noise_variance_": None, "shape_": None, "_likelihood": self}


# Gamma shapes are kept at most this multiple of 1 / CV^2 of the targets
# (CV, their weighted coefficient of variation): an expert through its rows
# would otherwise drive its shape, and the likelihood, to infinity. The
# analogue of the Gaussian noise floor (variance at least 1e-6 of y's): each
# expert's CV^2 = 1 / shape at least 1e-6 of y's.
_SHAPE_CEILING = 1e6
# y's CV^2 counts as at least this (constant y): a ceiling of 1e10, below
# the shapes at which a log(a y / mu) - a y / mu loses its digits.
_MIN_CV2 = 1e-4
# A guard for Newton's iteration, not a constraint met in practice: the
# log-likelihood tends to -inf as the shape tends to 0, so its maximum lies
# above any such bound unless the fit is wild.
_SHAPE_FLOOR = 1e-4


def gamma_shape_mle(s, floor=_SHAPE_FLOOR, ceiling=np.inf, *, max_iter=100):
    """Gamma shapes that solve ``log a - digamma(a) = s``, clipped to [floor, ceiling].

    ``s = sum_i w_i (y_i / mu_i - log(y_i / mu_i) - 1) / sum_i w_i`` (half the
    mean deviance) makes the root the weighted maximum-likelihood shape of
    Gamma variables with known means (as R's MASS::gamma.shape). Newton's
    method in ``1 / a`` (Minka, 2002, "Estimating a Gamma distribution")
    from Minka's approximation converges in a few steps; the log-likelihood
    is concave in ``a``, so the clipped root is the constrained maximum.
    ``s <= 0`` (a perfect fit) gives the ceiling.
    """
    s = np.asarray(s, dtype=np.float64)
    positive = s > 0
    t = np.where(positive, s, 1.0)
    disc = np.sqrt((t - 3.0) ** 2 + 24.0 * t)
    # Minka's start, written without cancellation on either side of s = 3
    small = t < 3.0
    a = np.empty_like(t)
    a[small] = (3.0 - t[small] + disc[small]) / (12.0 * t[small])
    a[~small] = 2.0 / (disc[~small] + t[~small] - 3.0)
    # far above the ceiling (s near 0) the root is not needed, and its
    # Newton steps would lose their digits
    a = np.minimum(a, 2 * ceiling) if np.isfinite(ceiling) else a
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        for _ in range(max_iter):
            f = np.log(a) - digamma(a) - t
            slope = 1.0 / a - polygamma(1, a)
            new = 1.0 / (1.0 / a + f / (a * a * slope))
            new = np.where(np.isfinite(new) & (new > 0), new, a)
            done = np.all(np.abs(new - a) <= 1e-12 * a)
            a = new
            if done:
                break
    return np.clip(np.where(positive, a, ceiling), floor, ceiling)


class GammaLikelihood(_GLMLikelihood):
    """Gamma experts: ``p_k(y | x) = Gamma(y; mean f_k(x), shape a_k)``.

    ``log p = a log(a y / mu) - a y / mu - log y - gammaln(a)``: the variance
    is ``mu^2 / a``, the dispersion ``1 / a``. Each expert's shape is its
    weighted maximum-likelihood shape given its means (:func:`gamma_shape_mle`),
    at most ``1e6`` over the targets' squared coefficient of variation.

    Parameters
    ----------
    names : list of str
        The experts' names, for the messages.
    shape_ceiling : float
        Largest shape.
    """

    family = "gamma"
    mean_rule = "means > 0"
    suggested = (
        "GammaRegressor, HistGradientBoostingRegressor(loss='gamma') or "
        "DecisionTreeRegressor"
    )

    def __init__(self, names, shape_ceiling):
        super().__init__(names)
        self.shape_ceiling = shape_ceiling

    @staticmethod
    def _check_range(y):
        bad = y <= 0
        if bad.any():
            raise ValueError(
                f"family='gamma' needs positive targets, y > 0; y has "
                f"{int(bad.sum())} value(s) <= 0 (the least: {y.min():.6g})."
            )

    @classmethod
    def from_targets(cls, y, sample_weight, names=()):
        """The likelihood of validated targets, and the targets as (n, 1)."""
        y = cls.check_targets(y)
        w = sample_weight / sample_weight.sum()
        mean = w @ y
        cv2 = (w @ (y - mean) ** 2) / mean**2
        return cls(names, _SHAPE_CEILING / max(cv2, _MIN_CV2)), y[:, None]

    @staticmethod
    def _bad_mean(means):
        return means <= 0

    @staticmethod
    def _log_scale(Y):
        return np.log(Y)

    @staticmethod
    def _deviance_terms(means, Y):
        """``(d, d - log1p(d))`` with ``d = y / mu - 1`` (half unit deviances)."""
        d = (Y[:, 0][:, None] - means[:, :, 0]) / means[:, :, 0]
        return d, d - np.log1p(d)

    def log_prob(self, means, Y, scale):
        """log p_k(y_i | x_i), shape (n_samples, n_experts)."""
        a = np.asarray(scale, dtype=np.float64)[None, :]
        _, half_dev = self._deviance_terms(means, Y)
        # a log(a y / mu) - a y / mu = -a (d - log1p(d)) + a log a - a: the
        # form that keeps its digits when y is close to mu and a is large
        log_norm = xlogy(a, a) - a - gammaln(a)
        return -a * half_dev + log_norm - np.log(Y[:, 0])[:, None]

    def m_step_scale(self, Y, means, weights, stats=None):
        """Each expert's weighted maximum-likelihood shape, (n_experts,).

        ``stats`` (linear experts' Gram matrices) hold squared residuals,
        not the Gamma's statistic: the means are used.
        """
        _, half_dev = self._deviance_terms(means, Y)
        totals = weights.sum(axis=0)
        s = np.einsum("nk,nk->k", weights, half_dev) / np.where(totals > 0, totals, 1.0)
        # an expert without weight gets a shape of 1 (the exponential):
        # log 1 - digamma(1) is Euler's constant
        s = np.where(totals > 0, s, np.euler_gamma)
        return gamma_shape_mle(s, ceiling=self.shape_ceiling)

    def scale_of(self, estimator):
        return estimator.shape_

    def n_scale_parameters(self, estimator):
        return int(np.size(estimator.shape_))

    def component_variance(self, means, scale):
        """A Gamma's variance, ``mu^2 / a``."""
        return means**2 / np.asarray(scale)[None, :, None]

    def _mixture(self, weights, means, scale):
        return GammaMixture(weights, means, np.asarray(scale)[None, :])

    def fitted_attributes(self, scale):
        """``shape_`` (``noise_variance_`` removed), and this likelihood."""
        return {
            "shape_": np.array(scale, dtype=np.float64),
            "noise_variance_": None,
            "_likelihood": self,
        }


# family name -> the regressor's likelihood class
FAMILIES = {
    "gaussian": GaussianLikelihood,
    "poisson": PoissonLikelihood,
    "gamma": GammaLikelihood,
}
