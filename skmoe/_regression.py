"""MixtureOfExpertsRegressor: experts with Gaussian, Poisson or Gamma noise
around their prediction."""

import numpy as np
from sklearn.base import RegressorMixin, _fit_context
from sklearn.linear_model import GammaRegressor, LinearRegression, PoissonRegressor
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if

from ._backends._dask import is_dask_collection, predict_blocks
from ._base import BaseMixtureOfExperts
from ._em._online import online_partial_fit, supports_partial_fit
from ._likelihoods import FAMILIES

# The default experts of the GLM families. Unpenalised (alpha=0): the M-step
# is then each expert's exact weighted maximum-likelihood fit, so that EM's
# log-likelihood never decreases. scikit-learn's GLM objective is the
# *weighted mean* deviance plus alpha / 2 ||coef||^2 (sample weights are
# normalised), so any alpha > 0 would weigh the penalty against an expert's
# summed responsibility, a different amount for each expert and iteration.
# Newton-Cholesky converges quadratically on these small, convex problems:
# its tol bounds the half squared Newton decrement (the log-likelihood left
# per unit weight) at the step before the last, so the last leaves far less.
# 1e-6 (against the default 1e-4) kept EM's log-likelihood monotone to
# round-off (1e-16 relative) on the tests' mixtures; 1e-7 and below reach
# the round-off of the loss in the solver's line search on unscaled inputs
# (bioChemists), where it warns and finishes by L-BFGS, to the same fit.
_GLM_EXPERT = {"alpha": 0.0, "solver": "newton-cholesky", "tol": 1e-6}


class MixtureOfExpertsRegressor(RegressorMixin, BaseMixtureOfExperts):
    """Mixture of experts regressor (Jacobs, Jordan, Nowlan & Hinton, 1991).

    The conditional density of the target is a gated mixture of experts, by
    default Gaussian::

        p(y | x) = sum_k g_k(x) N(y; f_k(x), diag(noise_variance_[k]))

    where ``g(x)`` is a softmax gate over the inputs and ``f_k`` is any
    scikit-learn regressor that accepts ``sample_weight``. Fitted by
    expectation-maximisation: the E-step computes each expert's
    responsibility for each row, the M-step refits every expert with those
    responsibilities as sample weights, the noise variances as weighted
    residual spreads, and the gate on the responsibilities as soft targets.
    With ``family="poisson"`` or ``"gamma"`` the experts' noise is Poisson
    (counts) or Gamma (positive, skewed targets) around their mean ``f_k(x)``,
    as R's flexmix ``FLXMRglm(family=...)``.

    Parameters
    ----------
    estimator : estimator, default=None
        Expert template, cloned ``n_experts`` times. Must accept
        ``sample_weight`` in ``fit``. None means the family's default:
        :class:`~sklearn.linear_model.LinearRegression`, fitted in closed
        form by weighted least squares (as is
        :class:`~sklearn.linear_model.Ridge` with a direct solver), for
        "gaussian"; ``PoissonRegressor(alpha=0.0, solver="newton-cholesky",
        tol=1e-6)`` for "poisson" and ``GammaRegressor`` with the same
        settings for "gamma" (unpenalised, so that each M-step is the exact
        weighted maximum-likelihood fit and the log-likelihood never
        decreases).
    family : {"gaussian", "poisson", "gamma"}, default="gaussian"
        The experts' noise distribution around their prediction ``mu =
        f_k(x)``. "gaussian": ``N(mu, noise_variance_[k])``. "poisson":
        ``Poisson(mu)``, for counts ``y >= 0`` (non-integer ``y``, e.g.
        frequencies weighted by exposure, are accepted as by
        PoissonRegressor: the log-likelihood is then a quasi-likelihood);
        no scale parameter. "gamma": the Gamma of mean ``mu`` and shape
        ``shape_[k]`` (variance ``mu^2 / shape``), for ``y > 0``; each
        expert's shape is fitted by weighted maximum likelihood in the
        M-step. Any expert whose ``predict`` gives the mean can be used
        (e.g. ``HistGradientBoostingRegressor(loss="poisson")``); a mean the
        family cannot have (negative for "poisson", not positive for
        "gamma") raises a ValueError naming the expert. A Poisson mean of 0
        is Poisson(0), all its mass at 0 (an expert of zeros only, as in
        zero-inflated counts); a count ``y > 0`` that every expert gives
        probability 0 raises. "poisson" and "gamma" take a
        one-dimensional target and fit by EM in memory (any ``training`` but
        "gradient"; not on the Dask or Array API paths, nor ``partial_fit``).
    n_experts : int or "auto", default=3
        Number of experts when ``estimator`` is used. ``"auto"`` fits 1 to
        6 experts (each with the ``n_init`` restarts) and keeps the lowest
        BIC on the training data (``n_experts_selection_`` holds the table);
        the experts need a parameter count (see
        :func:`~skmoe.expert_n_parameters`).
    estimators : list of (str, estimator), default=None
        Heterogeneous experts, one per entry; overrides ``n_experts``. Their
        parameters are reachable as ``<name>__<param>``.
    gate : {"linear", "mlp", "hierarchical"}, default="linear"
        The gating network. "linear": a softmax over a linear function of the
        inputs. "mlp": a softmax over a small neural network of the inputs
        (tanh hidden layers ``gate_hidden_layer_sizes``), for gate regions
        that are not separated by hyperplanes (fitted on the responsibilities
        by L-BFGS, warm-started across EM iterations; not convex, so it
        depends on ``random_state``). "hierarchical": a hierarchical mixture
        of experts (Jordan & Jacobs, 1994), a tree of linear softmax gates of
        depth ``gate_depth`` and branching ``gate_branching`` whose leaves are
        the experts; ``predict_gate`` gives the leaf probabilities.
    gate_alpha : float, default=1e-3
        L2 penalty on the gate coefficients (of standardised inputs), on the
        scale of the summed log-likelihood (like ``1 / C`` in
        LogisticRegression). For "mlp", on every weight; for "hierarchical",
        on every node.
    gate_hidden_layer_sizes : tuple of int, default=(16,)
        Units of the gating network's hidden layers (one or two layers are
        typical), used with ``gate="mlp"``.
    gate_features : array-like of int, bool or str, default=None
        The columns the gate sees (flexmix's concomitant variables): column
        indices, a boolean mask over the columns, or column names when fitted
        on a DataFrame. None means every column. The experts always see
        every column.
    gate_load_balance : float, default=0.0
        Weight of a load-balancing penalty against collapse:
        ``gate_load_balance * sum_i w_i * KL(uniform || mean gate)``, the
        mean gate usage over the training rows pulled towards uniform. It
        grows without bound as an expert's usage goes to zero, and is part
        of the penalised log-likelihood that EM monitors. Available with
        ``gate="linear"`` and ``gate="mlp"``.
    gate_depth : int, default=2
        Levels of the tree of gates, used with ``gate="hierarchical"``.
    gate_branching : int, default=2
        Children of each node of the tree, used with ``gate="hierarchical"``.
        The tree has ``gate_branching ** gate_depth`` leaves, and the number
        of experts must equal it (an error says so otherwise).
    training : {"em", "cem", "sem", "gradient"}, default="em"
        Training algorithm, as flexmix offers. "em": soft
        expectation-maximisation; the M-step weights each row by its
        responsibilities, and the penalised log-likelihood never decreases;
        converged when it changes by less than ``tol``. "cem":
        classification EM; each row goes wholly to its most probable expert
        before the M-step. Faster to settle and suited to experts that fit
        poorly on fractional weights (trees), but it maximises the
        classification likelihood ``sum_i w_i max_k log(g_k p_k)``, which is
        monotone (see ``objective_curve_``), so overlapping experts come out
        biased apart. "sem": stochastic EM; each row goes to one expert drawn
        from its responsibilities (with ``random_state``). The draws shake
        EM out of poor local optima and empty starts, but the log-likelihood
        is not monotone: it runs until the best penalised log-likelihood has
        not risen by ``tol`` for 20 iterations (or ``max_iter``) and keeps
        the parameters of that best iteration.
        "gradient": minimise the penalised negative log-likelihood ``-sum_i w_i
        log p(y_i | x_i)`` over the gate and the experts jointly (the 1991
        paper's training), from the same start as EM; only for experts whose
        parameters skmoe owns: LinearRegression and Ridge experts, each with its
        log noise variance (floored as in EM); a Ridge expert's ``alpha`` enters
        as the prior ``N(0, noise_variance / alpha)`` on its coefficients, whose
        update given the responsibilities is EM's weighted Ridge fit. Other
        experts raise a ValueError naming them. It needs ``gate="linear"``
        without ``gate_features`` or ``gate_load_balance``.
    gradient_solver : {"lbfgs", "adam"}, default="lbfgs"
        Optimiser of ``training="gradient"``: full-batch L-BFGS-B, or
        mini-batch Adam (the step is divided by 5 after 2 epochs that do not
        lower the objective by ``tol``; training stops after 4 divisions and
        keeps the best epoch's parameters).
    batch_size : int or "auto", default="auto"
        Rows per Adam mini-batch (``gradient_solver="adam"``); "auto" is
        ``min(200, n_samples)``, as in MLPRegressor.
    learning_rate_init : float, default=0.01
        Adam's step size (``gradient_solver="adam"``), on parameters of
        standardised inputs and targets. Larger than the MLP's 1e-3: a sharp
        gate needs coefficients of tens, and Adam moves each by about one
        step per update.
    learning_decay : float, default=0.51
        :meth:`partial_fit` moves the model a step
        ``rho_t = (learning_offset + t) ** -learning_decay`` towards the
        ``t``-th batch's M-step (as online LatentDirichletAllocation does).
        In (0.5, 1] the running averages converge; values just above 0.5
        forget a poor start fastest; 0 makes every step a whole M-step on
        the batch.
    learning_offset : float, default=1.0
        Offset of the :meth:`partial_fit` step schedule; larger values take
        smaller early steps.
    max_iter : int, default=200
        Most EM iterations per initialisation; with ``training="gradient"``,
        L-BFGS iterations or Adam epochs.
    tol : float, default=1e-6
        EM stops when the penalised log-likelihood per unit sample weight
        changes by less than ``tol``; L-BFGS when the penalised objective per
        unit weight changes by less than ``tol`` relative to its size.
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
        (``conditional_log_likelihood``, ``responsibilities``) always use every expert.
    routing : {"softmax", "top_k", "expert_choice"}, default="softmax"
        Which experts see which rows in training (prediction uses the gate,
        with ``top_k`` as set). "softmax": every expert every row (EM).
        "top_k": each row only its ``routing_k`` experts of largest gate
        weight, its responsibilities among them renormalised, so that an
        iteration evaluates and fits ``n_samples * routing_k`` expert rows
        instead of ``n_samples * n_experts``. "expert_choice": each expert
        takes the ``ceil(capacity_factor * n_samples / n_experts)`` rows of
        its largest gate weight, and rows no expert took go to the expert of
        their largest gate weight with room left, so that no expert is
        starved and none holds more than its capacity. Both fit by EM on
        the routed model; see the user guide ("Sparse routing") for what is
        still guaranteed.
    routing_k : int, default=2
        Experts per row with ``routing="top_k"``.
    capacity_factor : float, default=1.25
        Rows per expert with ``routing="expert_choice"``, as a multiple of
        ``n_samples / n_experts`` (at least 1, so that every row has room).
    n_jobs : int, default=None
        Jobs for fitting experts, and running the ``n_init`` restarts, in
        parallel through joblib (experts fitted in closed form do not need
        it). None means 1 unless in a :obj:`joblib.parallel_backend` context;
        ``with joblib.parallel_backend("dask"):`` spreads them over a Dask
        cluster. The fit is the same for any ``n_jobs`` and backend.
    device : {"cpu", "cuda"}, default="cpu"
        Where EM runs. "cpu": NumPy and numba on the CPU. "cuda": the GPU,
        through CuPy (``pip install skmoe[gpu]``), for linear experts
        (LinearRegression, Ridge) and the linear gate; the data are copied
        to the GPU once and the fitted attributes come back as NumPy arrays.
        CuPy inputs take the GPU path whatever ``device`` says. See the
        user guide's GPU section.
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
    gate_ : gate object
        The fitted gate. For a linear gate, ``gate_.coef_`` and
        ``gate_.intercept_`` hold its parameters (expert 0 is the reference,
        with zero coefficients; with ``gate_features``, one row of
        ``coef_`` per chosen column, listed in ``gate_.features_``). A
        gating network has ``coefs_`` and ``intercepts_`` per layer; a
        hierarchical gate has its node gates in ``nodes_``.
    noise_variance_ : ndarray of shape (n_experts,) or (n_experts, n_outputs)
        Each expert's noise variance (per output for multi-output targets).
        Only with ``family="gaussian"``.
    shape_ : ndarray of shape (n_experts,)
        Each expert's Gamma shape ``a`` (its dispersion is ``1 / a``, its
        coefficient of variation ``1 / sqrt(a)``), kept at most ``1e6`` over
        the squared coefficient of variation of the training targets (as the
        noise variances are floored). Only with ``family="gamma"``.
    log_likelihood_ : float
        Training log-likelihood, ``sum_i w_i log p(y_i | x_i)``, at the kept
        parameters (for "sem" and for experts whose fit is not exact, such
        as trees, those of its best iteration; after
        :meth:`partial_fit`, that of the last batch).
    log_likelihood_curve_ : ndarray of shape (`n_iter_`,)
        The training log-likelihood ``sum_i w_i log p(y_i | x_i)`` after each
        EM iteration (L-BFGS iteration, Adam epoch, or :meth:`partial_fit`
        batch), whatever the ``training``; monotone for soft EM with exact
        experts (penalty aside), not for "cem", "sem" or experts such as
        trees.
    objective_curve_ : ndarray of shape (`n_iter_`,)
        The quantity the training variant monitors after each iteration,
        gate penalty subtracted: the log-likelihood ("em", "sem") or the
        classification log-likelihood ``sum_i w_i max_k log(g_k p_k)``
        ("cem"). Non-decreasing for "em" and "cem" up to the round-off of the
        M-steps and after dead-expert re-seeds.
    n_experts_selection_ : pandas.DataFrame
        Only with ``n_experts="auto"``: per candidate number of experts, the
        log-likelihood, parameter count, BIC, AIC, ICL and convergence (as
        :func:`~skmoe.select_n_experts` gives them).
    n_iter_ : int
        EM iterations of the kept initialisation (L-BFGS iterations or Adam
        epochs; after :meth:`partial_fit`, the batches seen).
    converged_ : bool
        Whether that run met ``tol``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
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

    _parameter_constraints: dict = {
        **BaseMixtureOfExperts._parameter_constraints,
        "family": [StrOptions(set(FAMILIES))],
    }

    def __init__(
        self,
        estimator=None,
        *,
        family="gaussian",
        n_experts=3,
        estimators=None,
        gate="linear",
        gate_alpha=1e-3,
        gate_hidden_layer_sizes=(16,),
        gate_features=None,
        gate_load_balance=0.0,
        gate_depth=2,
        gate_branching=2,
        training="em",
        gradient_solver="lbfgs",
        batch_size="auto",
        learning_rate_init=1e-2,
        learning_decay=0.51,
        learning_offset=1.0,
        max_iter=200,
        tol=1e-6,
        n_init=1,
        init="kmeans",
        top_k=None,
        routing="softmax",
        routing_k=2,
        capacity_factor=1.25,
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
            gate_hidden_layer_sizes=gate_hidden_layer_sizes,
            gate_features=gate_features,
            gate_load_balance=gate_load_balance,
            gate_depth=gate_depth,
            gate_branching=gate_branching,
            training=training,
            gradient_solver=gradient_solver,
            batch_size=batch_size,
            learning_rate_init=learning_rate_init,
            learning_decay=learning_decay,
            learning_offset=learning_offset,
            max_iter=max_iter,
            tol=tol,
            n_init=n_init,
            init=init,
            top_k=top_k,
            routing=routing,
            routing_k=routing_k,
            capacity_factor=capacity_factor,
            n_jobs=n_jobs,
            device=device,
            random_state=random_state,
            verbose=verbose,
            warm_start=warm_start,
        )
        self.family = family

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        gaussian = self.family == "gaussian"
        tags.target_tags.multi_output = gaussian
        # Poisson and Gamma targets are non-negative and positive
        tags.target_tags.positive_only = not gaussian
        return tags

    def _default_expert(self):
        if self.family == "poisson":
            return PoissonRegressor(**_GLM_EXPERT)
        if self.family == "gamma":
            return GammaRegressor(**_GLM_EXPERT)
        return LinearRegression()

    @available_if(supports_partial_fit)
    @_fit_context(prefer_skip_nested_validation=False)
    def partial_fit(self, X, y, sample_weight=None):
        """Update the mixture with one mini-batch (online generalised EM).

        The first call starts from k-means responsibilities of the batch, as
        ``fit`` does; each call then computes the batch's responsibilities
        and moves the model a step ``(learning_offset + t) **
        -learning_decay`` towards the batch's M-step: running weighted
        least-squares statistics for LinearRegression / Ridge experts, the
        expert's own ``partial_fit`` with the responsibilities as
        ``sample_weight`` for others (e.g. SGDRegressor), a Newton step for
        the gate. ``max_iter``, ``tol``, ``n_init`` and ``training`` do not
        apply. After ``fit`` it continues from the fitted gate and experts
        (LinearRegression / Ridge experts restart their statistics from the
        batch). Available only when every expert can be updated so;
        otherwise accessing it raises an AttributeError caused by a
        ValueError that names the expert.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A batch of inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Its targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative row weights.

        Returns
        -------
        self : object
            The updated estimator; ``log_likelihood_`` is that of the batch
            after its update and ``n_iter_`` the number of batches seen.
        """
        return online_partial_fit(self, X, y, sample_weight, None)

    def _likelihood_for(self, y, sample_weight):
        names, _ = self._expert_templates()
        return FAMILIES[self.family].from_targets(y, sample_weight, names=names)

    def _noise_variance_2d(self):
        return self.noise_variance_.reshape(self.n_experts_, -1)

    def summary(self):
        """Per-expert summary of the training fit.

        Returns
        -------
        summary : pandas.DataFrame
            Indexed by expert name: ``mean_gate`` (mean gate weight over the
            training rows), ``effective_samples`` (summed responsibility times
            sample weight), ``log_likelihood`` (the expert's part of the
            training log-likelihood, ``sum_i w_i h_ik log p(y_i | x_i)``; the
            parts add up to ``log_likelihood_``) and the expert's scale:
            ``noise_std`` for "gaussian" (one column per output for
            multi-output targets), ``shape`` (``shape_``) for "gamma", none
            for "poisson". The coefficients, with standard errors, are in
            :meth:`coefficient_table`.
        """
        table = super().summary()
        if hasattr(self, "shape_"):
            table["shape"] = self.shape_
        return table

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
        if is_dask_collection(X):
            return predict_blocks(self, X, return_std=return_std)
        X = self._check_X(X)
        gate = self._routed_gate(X)
        means = self._routed_outputs(X, gate)
        mean = np.einsum("nk,nko->no", gate, means)
        if self._likelihood.y_is_1d:
            mean_out = mean[:, 0]
        else:
            mean_out = mean
        if not return_std:
            return mean_out
        # spread about the mixture mean (law of total variance): E[y^2] -
        # mean^2 would cancel catastrophically when |mean| >> std. In units
        # of each row's largest term, as hypot does: far from the data the
        # means' spread can be finite while its square overflows. The
        # experts' own variances: the noise variances (Gaussian), the means
        # (Poisson), mean^2 / shape (Gamma)
        spread = means - mean[:, None, :]
        likelihood = self._likelihood
        noise = likelihood.component_variance(means, likelihood.scale_of(self))
        unit = np.maximum(np.abs(spread).max(axis=1), np.sqrt(noise.max(axis=1)))
        unit = unit[:, None, :]
        with np.errstate(under="ignore"):
            var = np.einsum("nk,nko->no", gate, (spread / unit) ** 2 + noise / unit**2)
        std = unit[:, 0, :] * np.sqrt(var)
        return mean_out, (std[:, 0] if self._likelihood.y_is_1d else std)

    def _mixture_per_output(self, X):
        """Each output's 1-D predictive mixture (see ``skmoe/_predictive.py``)."""
        X = self._check_X(X)
        gate = self._routed_gate(X)
        means = self._routed_outputs(X, gate)
        likelihood = self._likelihood
        scale = likelihood.scale_of(self)
        return [
            likelihood.mixture(gate, means[:, :, o], scale, o)
            for o in range(means.shape[2])
        ]

    def _stack_outputs(self, per_output):
        """(n, ...) per output into the user's target shape."""
        if self._likelihood.y_is_1d:
            return per_output[0]
        return np.stack(per_output, axis=1)

    def predict_components(self, X):
        """Each expert's predictive distribution and its gate weight.

        A Gaussian expert's is ``N(mean, std^2)``; a Poisson expert's is the
        Poisson of that mean (``std = sqrt(mean)``), a Gamma expert's the
        Gamma of that mean and shape ``mean^2 / std^2`` (``shape_``).

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
        likelihood = self._likelihood
        variance = likelihood.component_variance(means, likelihood.scale_of(self))
        stds = np.broadcast_to(np.sqrt(variance), means.shape)
        if self._likelihood.y_is_1d:
            means, stds = means[:, :, 0], stds[:, :, 0]
        return Bunch(weight=gate, mean=means, std=np.array(stds))

    def predict_quantiles(self, X, quantiles=(0.05, 0.5, 0.95)):
        """Quantiles of the predictive mixture p(y | x).

        Exact up to double precision (bisection on the mixture CDF); for
        ``family="poisson"``, the smallest count whose mixture CDF reaches
        each level (bisection on the integers). For multi-output targets,
        the quantiles of each output's marginal.

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
            [mixture.quantiles(q) for mixture in self._mixture_per_output(X)]
        )

    def predict_mode(self, X):
        """Highest mode of the predictive mixture p(y | x).

        Where experts disagree, the mean from :meth:`predict` can fall between
        them, where the density is low; the mode is the value of highest
        density (for ``family="poisson"``, the most probable count; for
        "gamma", 0 where an expert of shape below 1 has weight, its density
        being unbounded there). For multi-output targets, the mode of each
        output's marginal.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_mode : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        return self._stack_outputs(
            [mixture.modes() for mixture in self._mixture_per_output(X)]
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
            [mixture.sample(n_samples, rng) for mixture in self._mixture_per_output(X)]
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
        return means[:, :, 0] if self._likelihood.y_is_1d else means
