"""MixtureOfExpertsRegressor: experts with Gaussian noise around their prediction."""

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.linear_model import LinearRegression
from sklearn.utils import Bunch, check_random_state

from ._base import BaseMixtureOfExperts
from ._experts import fit_experts
from ._kernels import gaussian_log_prob
from ._predictive import mixture_modes, mixture_quantiles, sample_mixture

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


class MixtureOfExpertsRegressor(RegressorMixin, BaseMixtureOfExperts):
    """Mixture of experts regressor (Jacobs, Jordan, Nowlan & Hinton, 1991).

    The conditional density of the target is a gated mixture of Gaussian
    experts::

        p(y | x) = sum_k g_k(x) N(y; f_k(x), diag(noise_variance_[k]))

    where ``g(x)`` is a softmax gate over the inputs and ``f_k`` is any
    scikit-learn regressor that accepts ``sample_weight``. Fitted by
    expectation-maximisation: the E-step computes each expert's
    responsibility for each row, the M-step refits every expert with those
    responsibilities as sample weights, the noise variances as weighted
    residual spreads, and the gate on the responsibilities as soft targets.

    Parameters
    ----------
    estimator : estimator, default=None
        Expert template, cloned ``n_experts`` times. Must accept
        ``sample_weight`` in ``fit``. None means
        :class:`~sklearn.linear_model.LinearRegression`, fitted in closed
        form by weighted least squares (as is
        :class:`~sklearn.linear_model.Ridge` with a direct solver).
    n_experts : int, default=3
        Number of experts when ``estimator`` is used.
    estimators : list of (str, estimator), default=None
        Heterogeneous experts, one per entry; overrides ``n_experts``. Their
        parameters are reachable as ``<name>__<param>``.
    gate : {"linear"}, default="linear"
        The gating network: a softmax over a linear function of the inputs.
    gate_alpha : float, default=1e-3
        L2 penalty on the gate coefficients (of standardised inputs), on the
        scale of the summed log-likelihood (like ``1 / C`` in
        LogisticRegression).
    training : {"em"}, default="em"
        Training algorithm: expectation-maximisation.
    max_iter : int, default=200
        Most EM iterations per initialisation.
    tol : float, default=1e-6
        EM stops when the penalised log-likelihood per unit sample weight
        changes by less than ``tol``.
    n_init : int, default=1
        Initialisations to run; the one with the best log-likelihood is kept.
    init : {"kmeans", "random"}, default="kmeans"
        Starting responsibilities: "kmeans" starts from k-means clusters of
        the standardised inputs and targets, and the further ``n_init - 1``
        restarts from random responsibilities, which explore other optima;
        "random" draws every start's responsibilities from a flat Dirichlet.
    top_k : int, default=None
        Sparse gating at prediction: keep only the ``top_k`` largest gate
        weights per row, renormalised, and call each expert only on the
        rows routed to it. None uses every expert. Densities
        (``score_samples``, ``responsibilities``) always use every expert.
    n_jobs : int, default=None
        Jobs for fitting experts, and running the ``n_init`` restarts, in
        parallel through joblib (experts fitted in closed form do not need
        it). None means 1 unless in a :obj:`joblib.parallel_backend` context;
        ``with joblib.parallel_backend("dask"):`` spreads them over a Dask
        cluster. The fit is the same for any ``n_jobs`` and backend.
    device : {"cpu"}, default="cpu"
        Where the EM kernels run.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation; an int gives reproducible fits.
    verbose : int, default=0
        Print the log-likelihood and its change at each EM iteration.
    warm_start : bool, default=False
        Start EM from the previous fit's experts and gate (``n_init`` is then
        ignored).

    Attributes
    ----------
    experts_ : list of estimators
        The fitted experts.
    expert_names_ : list of str
        Their names (``expert0``, ... or the names in ``estimators``).
    n_experts_ : int
        Number of experts.
    gate_ : SoftmaxGate
        The fitted gate; ``gate_.coef_`` and ``gate_.intercept_`` hold its
        parameters (expert 0 is the reference, with zero coefficients).
    noise_variance_ : ndarray of shape (n_experts,) or (n_experts, n_outputs)
        Each expert's noise variance (per output for multi-output targets).
    log_likelihood_ : float
        Training log-likelihood, ``sum_i w_i log p(y_i | x_i)``.
    log_likelihood_curve_ : ndarray of shape (n_iter_,)
        The training log-likelihood after each EM iteration.
    n_iter_ : int
        EM iterations of the kept initialisation.
    converged_ : bool
        Whether that run met ``tol``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    MixtureOfExpertsClassifier : The classification counterpart.
    sklearn.ensemble.StackingRegressor : Combines experts with a fixed,
        input-independent meta-learner instead of a gate.

    References
    ----------
    R. A. Jacobs, M. I. Jordan, S. J. Nowlan and G. E. Hinton, "Adaptive
    mixtures of local experts", Neural Computation 3(1), 1991.

    Examples
    --------
    >>> from skmoe import MixtureOfExpertsRegressor
    >>> from skmoe.datasets import make_moe_regression
    >>> X, y = make_moe_regression(n_samples=500, n_experts=2, random_state=0)
    >>> moe = MixtureOfExpertsRegressor(n_experts=2, random_state=0).fit(X, y)
    >>> moe.predict_gate(X[:2]).shape
    (2, 2)
    """

    _is_classifier_moe = False

    def __init__(
        self,
        estimator=None,
        *,
        n_experts=3,
        estimators=None,
        gate="linear",
        gate_alpha=1e-3,
        training="em",
        max_iter=200,
        tol=1e-6,
        n_init=1,
        init="kmeans",
        top_k=None,
        n_jobs=None,
        device="cpu",
        random_state=None,
        verbose=0,
        warm_start=False,
    ):
        super().__init__(
            estimator,
            n_experts=n_experts,
            estimators=estimators,
            gate=gate,
            gate_alpha=gate_alpha,
            training=training,
            max_iter=max_iter,
            tol=tol,
            n_init=n_init,
            init=init,
            top_k=top_k,
            n_jobs=n_jobs,
            device=device,
            random_state=random_state,
            verbose=verbose,
            warm_start=warm_start,
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _default_expert(self):
        return LinearRegression()

    def _validate_targets(self, y, *, fitting, sample_weight=None):
        Y = np.asarray(y, dtype=np.float64)
        Y = Y.reshape(-1, 1) if Y.ndim == 1 else Y
        if fitting:
            self._y_is_1d = np.ndim(y) == 1
            w = sample_weight / sample_weight.sum()
            mean = w @ Y
            self._noise_floor = noise_floor(mean, w @ (Y - mean) ** 2, w @ Y**2, len(Y))
        elif Y.shape[1] != self._noise_floor.shape[0]:
            raise ValueError(
                f"y has {Y.shape[1]} output(s) but the model was fitted on "
                f"{self._noise_floor.shape[0]}."
            )
        return Y

    def _kmeans_target_columns(self, Y):
        return Y

    def _noise_variance_2d(self):
        return self.noise_variance_.reshape(self.n_experts_, -1)

    def _m_step_experts(self, X, Y, weights):
        self.experts_ = fit_experts(
            self._templates,
            X,
            Y,
            weights,
            is_classifier=False,
            y_is_1d=self._y_is_1d,
            n_jobs=self.n_jobs,
        )
        means = self._expert_outputs(X)
        n_eff = weights.sum(axis=0)
        sq_resid = (Y[:, None, :] - means) ** 2
        var = np.einsum("nk,nko->ko", weights, sq_resid) / n_eff[:, None]
        var = np.maximum(var, self._noise_floor)
        self.noise_variance_ = var[:, 0] if self._y_is_1d else var
        return means

    def _expert_outputs(self, X, experts=None, rows=None):
        """Expert means, shape (n_samples, n_experts, n_outputs)."""
        experts = self.experts_ if experts is None else experts
        n_outputs = self._noise_floor.shape[0]
        means = np.zeros((X.shape[0], len(experts), n_outputs))
        for k, est in enumerate(experts):
            idx = slice(None) if rows is None else rows[k]
            Xk = X[idx]
            if Xk.shape[0]:
                means[idx, k, :] = np.asarray(est.predict(Xk)).reshape(
                    Xk.shape[0], n_outputs
                )
        return means

    def _log_prob_from_outputs(self, outputs, Y):
        return gaussian_log_prob(Y, outputs, self._noise_variance_2d())

    def predict(self, X, return_std=False):
        """Mixture mean, ``sum_k g_k(x) f_k(x)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        return_std : bool, default=False
            Also return the standard deviation of the mixture p(y | x).

        Returns
        -------
        y_mean : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        y_std : ndarray of the same shape
            Only with ``return_std=True``.

        Given a Dask array, both are Dask arrays computed block by block.
        """
        from ._dask import is_dask_collection, predict_blocks

        if is_dask_collection(X):
            return predict_blocks(self, X, return_std=return_std)
        X = self._check_X(X)
        gate = self._routed_gate(X)
        means = self._routed_outputs(X, gate)
        mean = np.einsum("nk,nko->no", gate, means)
        if self._y_is_1d:
            mean_out = mean[:, 0]
        else:
            mean_out = mean
        if not return_std:
            return mean_out
        # spread about the mixture mean (law of total variance): E[y^2] -
        # mean^2 would cancel catastrophically when |mean| >> std
        var = np.einsum(
            "nk,nko->no",
            gate,
            (means - mean[:, None, :]) ** 2 + self._noise_variance_2d()[None],
        )
        std = np.sqrt(var)
        return mean_out, (std[:, 0] if self._y_is_1d else std)

    def _mixture_per_output(self, X):
        """(gate, means, stds) of each output's 1-D mixture, each (n, K)."""
        comp = self.predict_components(X)
        mean = comp.mean[:, :, None] if self._y_is_1d else comp.mean
        std = comp.std[:, :, None] if self._y_is_1d else comp.std
        return [
            (comp.weight, mean[:, :, o], std[:, :, o]) for o in range(mean.shape[2])
        ]

    def _stack_outputs(self, per_output):
        """(n, ...) per output into the user's target shape."""
        if self._y_is_1d:
            return per_output[0]
        return np.stack(per_output, axis=1)

    def predict_components(self, X):
        """Each expert's predictive Gaussian and its gate weight.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        components : Bunch
            ``weight`` (n_samples, n_experts), the gate weights (after
            ``top_k``); ``mean`` and ``std``, each of shape
            (n_samples, n_experts) or (n_samples, n_experts, n_outputs).
        """
        X = self._check_X(X)
        gate = self._routed_gate(X)
        means = self._routed_outputs(X, gate)
        stds = np.broadcast_to(np.sqrt(self._noise_variance_2d())[None], means.shape)
        if self._y_is_1d:
            means, stds = means[:, :, 0], stds[:, :, 0]
        return Bunch(weight=gate, mean=means, std=np.array(stds))

    def predict_quantiles(self, X, quantiles=(0.05, 0.5, 0.95)):
        """Quantiles of the predictive mixture p(y | x).

        Exact up to double precision (bisection on the mixture CDF). For
        multi-output targets, the quantiles of each output's marginal.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        quantiles : array-like of float in (0, 1), default=(0.05, 0.5, 0.95)

        Returns
        -------
        y_quantiles : ndarray of shape (n_samples, n_quantiles) or \
                (n_samples, n_outputs, n_quantiles)
        """
        q = np.atleast_1d(np.asarray(quantiles, dtype=float))
        if q.ndim != 1 or np.any((q <= 0) | (q >= 1)) or not np.all(np.isfinite(q)):
            raise ValueError(f"quantiles must lie strictly between 0 and 1, got {q}.")
        return self._stack_outputs(
            [mixture_quantiles(g, m, s, q) for g, m, s in self._mixture_per_output(X)]
        )

    def predict_mode(self, X):
        """Highest mode of the predictive mixture p(y | x).

        Where experts disagree, the mean from :meth:`predict` can fall between
        them, where the density is low; the mode is the value of highest
        density. For multi-output targets, the mode of each output's marginal.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_mode : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        return self._stack_outputs(
            [mixture_modes(g, m, s) for g, m, s in self._mixture_per_output(X)]
        )

    def sample_y(self, X, n_samples=1, random_state=0):
        """Draw targets from the predictive mixture p(y | x).

        Parameters
        ----------
        X : array-like of shape (n_samples_X, n_features)
        n_samples : int, default=1
            Draws per row.
        random_state : int, RandomState instance or None, default=0
            As in :meth:`sklearn.gaussian_process.GaussianProcessRegressor.sample_y`.

        Returns
        -------
        y_samples : ndarray of shape (n_samples_X, n_samples) or \
                (n_samples_X, n_outputs, n_samples)
        """
        rng = check_random_state(random_state)
        return self._stack_outputs(
            [
                sample_mixture(g, m, s, n_samples, rng)
                for g, m, s in self._mixture_per_output(X)
            ]
        )

    def predict_expert(self, X):
        """Each expert's prediction, regardless of the gate.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_experts : ndarray of shape (n_samples, n_experts) or \
                (n_samples, n_experts, n_outputs)
        """
        means = self._expert_outputs(self._check_X(X))
        return means[:, :, 0] if self._y_is_1d else means
