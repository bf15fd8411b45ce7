"""BaseMixtureOfExperts: parameters, validation; fit = plan -> engine -> apply."""

import functools
import types
import warnings
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.base import _fit_context, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state, get_tags
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metaestimators import _BaseComposition
from sklearn.utils.validation import (
    _check_sample_weight,  # scikit-learn's own check, as in its estimators
    check_is_fitted,
    validate_data,
)

from ._backends._dask import is_dask_collection, map_row_blocks
from ._backends._numpy import prepare_in_memory
from ._em._gradient import GradientSettings, run_gradient
from ._em._loop import EMSettings, run_em, run_restarts
from ._em._start import seed_unset_random_states
from ._experts import check_experts
from ._gates._builder import build_gate, gate_n_parameters
from ._inference import coefficient_table
from ._kernels import fit_threads
from ._plan import check_supported, select_path
from ._routing import Router
from ._selection import CountUndefinedError, expert_n_parameters, select_n_experts
from ._validation import check_no_categorical, check_safe_range, check_sparse_input

# The numbers of experts ``n_experts="auto"`` chooses among, by BIC.
AUTO_N_EXPERTS = range(1, 7)

# Fewer rows (of positive weight) per expert than this get a warning: each
# expert is then fitted on a handful of rows, its noise at the floor.
_MIN_ROWS_PER_EXPERT = 3


class BaseMixtureOfExperts(_BaseComposition, metaclass=ABCMeta):
    """Base class for mixtures of experts fitted by EM.

    Subclasses give the default expert and the experts' likelihood
    (``_likelihood_for``): an object that turns the experts' outputs into
    log p_k(y | x) and fits their scale parameters. ``fit`` picks the path
    (in memory, Array API, Dask), checks the configuration against the
    capability table (``skmoe/_plan.py``), validates the data, runs the EM
    engine (``skmoe/_em``) on the path's backend and sets the fitted
    attributes from its result, only once the whole fit has succeeded.
    """

    _parameter_constraints: dict = {
        "estimator": [None, HasMethods(["fit"])],
        "n_experts": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "estimators": [None, list],
        "gate": [StrOptions({"linear", "mlp", "hierarchical"})],
        "gate_alpha": [Interval(Real, 0, None, closed="left")],
        "gate_hidden_layer_sizes": [
            "array-like",
            Interval(Integral, 1, None, closed="left"),
        ],
        "gate_features": [None, "array-like"],
        "gate_load_balance": [Interval(Real, 0, None, closed="left")],
        "gate_depth": [Interval(Integral, 1, None, closed="left")],
        "gate_branching": [Interval(Integral, 2, None, closed="left")],
        "training": [StrOptions({"em", "cem", "sem", "gradient"})],
        "gradient_solver": [StrOptions({"lbfgs", "adam"})],
        "batch_size": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
        ],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "learning_decay": [Interval(Real, 0, 1, closed="both")],
        "learning_offset": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "init": [StrOptions({"kmeans", "random"})],
        "top_k": [None, Interval(Integral, 1, None, closed="left")],
        "routing": [StrOptions({"softmax", "top_k", "expert_choice"})],
        "routing_k": [Interval(Integral, 1, None, closed="left")],
        # at least one: the experts' capacities then hold every row
        "capacity_factor": [Interval(Real, 1, None, closed="left")],
        # None, or a number of jobs (-1 for all cores): 0 means nothing
        "n_jobs": [
            None,
            Interval(Integral, 1, None, closed="left"),
            Interval(Integral, None, -1, closed="right"),
        ],
        "device": [StrOptions({"cpu", "cuda"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
    }

    def __init__(
        self,
        estimator=None,
        *,
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
        self.estimator = estimator
        self.n_experts = n_experts
        self.estimators = estimators
        self.gate = gate
        self.gate_alpha = gate_alpha
        self.gate_hidden_layer_sizes = gate_hidden_layer_sizes
        self.gate_features = gate_features
        self.gate_load_balance = gate_load_balance
        self.gate_depth = gate_depth
        self.gate_branching = gate_branching
        self.training = training
        self.gradient_solver = gradient_solver
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.init = init
        self.top_k = top_k
        self.routing = routing
        self.routing_k = routing_k
        self.capacity_factor = capacity_factor
        self.n_jobs = n_jobs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start

    # -- nested parameters of ``estimators`` (the StackingRegressor convention)

    def get_params(self, deep=True):
        """Get parameters, including those of named ``estimators``.

        Parameters
        ----------
        deep : bool, default=True
            Also return the parameters of the experts, as
            ``<name>__<param>`` or ``estimator__<param>``.

        Returns
        -------
        params : dict
        """
        return self._get_params("estimators", deep=deep)

    def set_params(self, **params):
        """Set parameters, including those of named ``estimators``.

        Parameters
        ----------
        **params : dict
            Estimator parameters.

        Returns
        -------
        self : estimator instance
        """
        self._set_params("estimators", **params)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # sparse X where the fit takes it (see check_sparse_input)
        try:
            _, templates = self._expert_templates()
        except (TypeError, ValueError):
            templates = []
        tags.input_tags.sparse = (
            bool(templates)
            and self.training != "gradient"
            and self.gate == "linear"
            and self.gate_load_balance == 0
            and self.device == "cpu"
            and all(get_tags(t).input_tags.sparse for t in templates)
        )
        return tags

    # -- subclass hooks

    @abstractmethod
    def _default_expert(self):
        """The expert used when neither ``estimator`` nor ``estimators`` is set."""

    @abstractmethod
    def _likelihood_for(self, y, sample_weight):
        """The experts' likelihood for targets ``y``, and the encoded targets.

        ``y`` is validated; returns ``(likelihood, Y)``.
        """

    # -- helpers

    def _expert_templates(self):
        """Names and unfitted templates of the experts, checked."""
        if isinstance(self.n_experts, (bool, np.bool_)):
            raise TypeError(
                f"n_experts must be an int, got {self.n_experts!r} (a bool)."
            )
        if self.estimators is not None:
            if self.estimator is not None:
                raise ValueError(
                    "Give either estimator (cloned n_experts times) or "
                    "estimators (a list of (name, estimator)), not both."
                )
            default = type(self)().n_experts
            if self.n_experts not in (default, len(self.estimators)):
                raise ValueError(
                    f"n_experts={self.n_experts} conflicts with the "
                    f"{len(self.estimators)} experts given in estimators; "
                    "estimators sets the number of experts: leave n_experts "
                    "at its default or set it to len(estimators)."
                )
            if len(self.estimators) == 0:
                raise ValueError("estimators is empty; give at least one expert.")
            try:
                names, templates = zip(*self.estimators, strict=True)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    "estimators must be a list of (name, estimator) tuples."
                ) from exc
            self._validate_names(names)
            names, templates = list(names), list(templates)
        else:
            template = (
                self._default_expert() if self.estimator is None else self.estimator
            )
            names = [f"expert{k}" for k in range(self.n_experts)]
            templates = [template] * self.n_experts
        check_experts(names, templates, need_proba=self._is_classifier_moe)
        return names, templates

    def _check_n_experts(self, K, warm):
        """Raise if ``K`` experts do not fit ``warm_start`` or ``top_k``."""
        if warm and len(self.experts_) != K:
            raise ValueError(
                f"warm_start=True needs the same number of experts as the "
                f"previous fit ({len(self.experts_)}), got {K}."
            )
        if self.top_k is not None and self.top_k > K:
            raise ValueError(f"top_k={self.top_k} is larger than n_experts={K}.")

    @staticmethod
    def _check_n_samples(n_samples, K):
        """Raise unless there are enough rows of positive weight for K experts."""
        if n_samples < max(K, 2):
            bound = f"n_experts={K}" if K >= 2 else "2"
            raise ValueError(
                f"n_samples={n_samples} should be >= {bound}: each expert needs "
                "a sample (of positive weight) to start from."
            )
        if K > 1 and n_samples < _MIN_ROWS_PER_EXPERT * K:
            warnings.warn(
                f"{n_samples} samples for {K} experts: each expert is fitted on "
                f"about {n_samples / K:.1f} of them, too few for a reliable fit; "
                "use fewer experts.",
                UserWarning,
                stacklevel=4,
            )

    def _gate_factory(self, n_experts, n_features, feature_names):
        """``make_gate(seed)``: an unfitted gate as the parameters ask for.

        The parameters are copied into a plain namespace, so that the factory
        pickles without the estimator (restarts may run in other processes).
        """
        params = types.SimpleNamespace(**self.get_params(deep=False))
        return functools.partial(
            build_gate, params, n_experts, n_features, feature_names
        )

    def _settings(self):
        if self.training == "gradient":
            return GradientSettings(
                max_iter=self.max_iter,
                tol=self.tol,
                init=self.init,
                verbose=self.verbose,
                solver=self.gradient_solver,
                batch_size=self.batch_size,
                learning_rate_init=self.learning_rate_init,
            )
        return EMSettings(
            training=self.training,
            max_iter=self.max_iter,
            tol=self.tol,
            init=self.init,
            verbose=self.verbose,
        )

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None):
        """Fit the mixture of experts by EM.

        Given Dask arrays, a regressor with linear experts or a classifier
        with LogisticRegression experts is fitted out of core, by EM
        streamed over the chunks (see the user guide, "Scaling out with
        Dask"). A fit that raises leaves the estimator as it was.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs (or a Dask array).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets (or a Dask array).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative row weights; zero weight equals leaving the row out.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        if self.n_experts == "auto":
            return self._fit_auto(X, y, sample_weight)
        return self._fit(X, y, sample_weight)

    def _fit_auto(self, X, y, sample_weight):
        """``fit`` with ``n_experts="auto"``: the number by BIC, over a range.

        Each of ``AUTO_N_EXPERTS`` is fitted (with the ``n_init`` restarts)
        and the lowest BIC on the training data is kept; its fitted
        attributes become this estimator's, with the table of the candidates
        in ``n_experts_selection_``. A warm start continues with the number
        chosen before.
        """
        if self.estimators is not None:
            raise ValueError(
                "n_experts='auto' chooses how many copies of estimator to fit; "
                "estimators fixes the experts: give one or the other."
            )
        if select_path(self, X, y) != "memory":
            raise ValueError(
                "n_experts='auto' fits each candidate in memory; for Dask or "
                "GPU arrays choose n_experts with select_n_experts on a sample."
            )
        if self.warm_start and hasattr(self, "experts_"):
            candidate = clone(self).set_params(n_experts=self.n_experts_)
            candidate.__dict__.update(self._fitted_attributes())
            candidate.fit(X, y, sample_weight)
            self.__dict__.update(candidate._fitted_attributes())
            return self
        template = clone(self).set_params(n_experts=1, warm_start=False)
        try:
            best, table = select_n_experts(
                template, X, y, AUTO_N_EXPERTS, sample_weight=sample_weight
            )
        except CountUndefinedError as exc:
            # the first candidate's BIC says so: one fit, not six
            raise ValueError(
                f"n_experts='auto' chooses by BIC, which needs the experts' "
                f"parameter count. {exc}"
            ) from exc
        self.__dict__.update(best._fitted_attributes())
        self.n_experts_selection_ = table
        if not best.converged_:
            warnings.warn(
                f"EM did not converge for the chosen n_experts={best.n_experts_} "
                f"in max_iter={self.max_iter} iterations; increase max_iter.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return self

    def _fitted_attributes(self):
        """What a fit set: every attribute that is not a parameter."""
        params = self.get_params(deep=False)
        return {k: v for k, v in vars(self).items() if k not in params}

    def _fit(self, X, y, sample_weight, *, path=None, namespace=None):
        """``fit`` on ``path`` (None: chosen from the inputs).

        ``namespace`` forces the Array API namespace (see
        ``prepare_array_api``).
        """
        warm = self.warm_start and hasattr(self, "experts_")
        if path is None:
            path = select_path(self, X, y)
        # configuration errors first: no data is read for them
        names, templates = self._expert_templates()
        K = len(templates)
        self._check_n_experts(K, warm)
        expert_info = check_supported(path, self, names, templates)
        if path == "memory" and self.training == "gradient":
            expert_info = check_supported("gradient", self, names, templates)
        check_sparse_input(X, self, path, names, templates)
        if path == "dask" and self._is_classifier_moe:
            from ._backends._dask_classifier import prepare_streamed_classifier

            prepared = prepare_streamed_classifier(self, X, y, sample_weight, warm=warm)
        elif path == "dask":
            from ._backends._dask import prepare_streamed

            prepared = prepare_streamed(self, X, y, sample_weight, warm=warm)
        elif path == "array_api":
            from ._backends._array_api import prepare_array_api

            prepared = prepare_array_api(
                self, X, y, sample_weight, warm=warm, xp=namespace
            )
        else:
            prepared = prepare_in_memory(self, X, y, sample_weight, warm=warm)
        self._check_n_samples(prepared.n_positive, K)
        if warm:
            prepared.likelihood.check_continues(self._likelihood)
        attributes = prepared.attributes
        make_gate = self._gate_factory(
            K, attributes["n_features_in_"], attributes["feature_names_in_"]
        )
        make_gate(0)  # a gate the parameters cannot build fails here
        random_state = check_random_state(self.random_state)
        templates = [
            seed_unset_random_states(clone(t), random_state) for t in templates
        ]
        backend = prepared.build(
            templates=templates,
            expert_info=expert_info,
            make_gate=make_gate,
            n_jobs=self.n_jobs,
            tree_branching=self.gate_branching if self.gate == "hierarchical" else None,
        )
        router = Router.of(self, K)
        if router is not None:
            backend.use_router(router)
        n_init = 1 if warm else self.n_init
        # seeds drawn up front: each restart is the same wherever it runs
        seeds = random_state.randint(np.iinfo(np.int32).max, size=n_init)
        engine_only = getattr(backend, "fits_every_expert", False)
        with fit_threads(prepared.n_positive, hold_blas=engine_only):
            result = run_restarts(
                run_gradient if self.training == "gradient" else run_em,
                backend,
                self._settings(),
                seeds,
                n_jobs=self.n_jobs,
                warm_state=backend.warm_state(self) if warm else None,
            )
        if not np.isfinite(result.log_likelihood):
            # never a fitted model that explains nothing: say so, and leave
            # the estimator as it was
            raise ValueError(
                f"The fit reached a log-likelihood of {result.log_likelihood}: "
                "the data are out of the range the model can hold in float64. "
                "Rescale X and y (e.g. with StandardScaler)."
            )
        result.attributes.update(attributes)
        result.attributes.update(
            n_experts_=K,
            expert_names_=names,
            _templates=templates,
            **prepared.likelihood.fitted_attributes(result.scale),
        )
        result.apply_to(self)
        if not result.converged:
            warnings.warn(
                f"{'Gradient training' if self.training == 'gradient' else 'EM'} did "
                f"not converge in max_iter={self.max_iter} iterations "
                f"(tol={self.tol}); increase max_iter or tol, or try another "
                "initialisation.",
                ConvergenceWarning,
                # past _fit, fit and scikit-learn's _fit_context: the caller
                stacklevel=4,
            )
        return self

    # -- prediction helpers

    def _check_X(self, X):
        check_is_fitted(self)
        check_no_categorical(X)
        X = validate_data(self, X, reset=False, dtype=np.float64, accept_sparse="csr")
        # beyond the safe range the experts' means and the mixture's spread
        # overflow: a clear error rather than inf or NaN
        check_safe_range(X, "X", spread=False)
        return X

    def predict_gate(self, X):
        """Gate probabilities of each expert for each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        gate : ndarray of shape (n_samples, n_experts)
            Rows sum to one. Given a Dask array, a Dask array computed
            block by block.
        """
        if is_dask_collection(X):
            return map_row_blocks(self, self.predict_gate, X, self.n_experts_)
        return self.gate_.predict_proba(self._check_X(X))

    def _routed_gate(self, X):
        """Gate weights with only the ``top_k`` largest per row kept."""
        gate = self.gate_.predict_proba(X)
        if self.top_k is None or self.top_k >= self.n_experts_:
            return gate
        drop = np.argpartition(-gate, self.top_k - 1, axis=1)[:, self.top_k :]
        np.put_along_axis(gate, drop, 0.0, axis=1)
        gate /= gate.sum(axis=1, keepdims=True)
        return gate

    def _routed_outputs(self, X, gate):
        """Expert outputs, each expert evaluated only where its gate is > 0."""
        rows = None
        if self.top_k is not None and self.top_k < self.n_experts_:
            rows = [np.flatnonzero(gate[:, k] > 0) for k in range(self.n_experts_)]
        return self._expert_outputs(X, rows)

    def _expert_outputs(self, X, rows=None):
        """The experts' outputs at validated ``X``: finite, or a ValueError.

        An expert's own arithmetic can overflow far from the data it was
        fitted on (GaussianNB squares distances over tiny variances): the
        outputs are checked instead, and the expert and row named.
        """
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            outputs = self._likelihood.outputs(self.experts_, X, rows)
        bad = ~np.isfinite(outputs)
        if bad.any():
            k = int(np.flatnonzero(bad.any(axis=(0, 2)))[0])
            rows_k = np.flatnonzero(bad[:, k].any(axis=1))
            raise ValueError(
                f"Expert {self.expert_names_[k]!r} gives non-finite outputs at "
                f"{rows_k.size} row(s) of X (the first: row {rows_k[0]}): they "
                "lie too far outside the data it was fitted on for its "
                "arithmetic. Bring them closer, or rescale X."
            )
        return outputs

    def _check_X_y(self, X, y):
        check_is_fitted(self)
        check_no_categorical(X)
        X, y = validate_data(
            self,
            X,
            y,
            reset=False,
            dtype=np.float64,
            accept_sparse="csr",
            multi_output=not self._is_classifier_moe,
            y_numeric=not self._is_classifier_moe,
        )
        check_safe_range(X, "X", spread=False)
        if not self._is_classifier_moe:
            check_safe_range(y, "y", spread=False)
        return X, self._likelihood.encode(y)

    def _posterior(self, X, Y):
        """Responsibilities and per-row log-likelihoods of validated data."""
        likelihood = self._likelihood
        return likelihood.posterior(
            self.gate_.predict_log_proba(X),
            self._expert_outputs(X),
            Y,
            likelihood.scale_of(self),
        )

    def conditional_log_likelihood(self, X, y):
        """Log-density of each target given its inputs, log p(y_i | x_i).

        The mixture is a conditional density of y given x, so this needs the
        targets (scikit-learn's ``score_samples(X)`` is a density of X, which
        a mixture of experts does not model). The sum over the training rows,
        weighted, is ``log_likelihood_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        log_density : ndarray of shape (n_samples,)
        """
        X, Y = self._check_X_y(X, y)
        return self._posterior(X, Y)[1]

    def n_parameters(self):
        """Number of free parameters: gate, experts and noise variances.

        The gate's count comes from the gate: ``(n_gate_features + 1) *
        (n_experts - 1)`` for a linear gate (``n_gate_features`` the columns
        it sees, see ``gate_features``), every weight and bias of a gating
        network, ``(n_gate_features + 1) * (branching - 1)`` per node of a
        hierarchical gate. Each expert is counted by
        :func:`expert_n_parameters` (which raises for experts whose count is
        not defined); a regressor adds one noise variance per expert and
        output.

        Returns
        -------
        n_parameters : int
        """
        check_is_fitted(self)
        n_gate = gate_n_parameters(self.gate_)
        n_classes = len(self.classes_) if self._is_classifier_moe else None
        n_experts = sum(expert_n_parameters(e, n_classes) for e in self.experts_)
        return n_gate + n_experts + self._likelihood.n_scale_parameters(self)

    def bic(self, X, y):
        """Bayesian information criterion on (X, y); lower is better.

        ``-2 log L + n_parameters * log(n_samples)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        bic : float
        """
        log_l = self.conditional_log_likelihood(X, y).sum()
        return float(-2 * log_l + self.n_parameters() * np.log(len(X)))

    def aic(self, X, y):
        """Akaike information criterion on (X, y); lower is better.

        ``-2 log L + 2 n_parameters``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        aic : float
        """
        return float(
            -2 * self.conditional_log_likelihood(X, y).sum() + 2 * self.n_parameters()
        )

    def icl(self, X, y):
        """Integrated completed likelihood criterion on (X, y); lower is better.

        ``-2 log L_c + n_parameters * log(n_samples)``, where ``log L_c =
        sum_i log(g_z(x_i) p_z(y_i | x_i))`` is the classification
        log-likelihood of each row's most responsible expert ``z`` (see
        :meth:`clusters`), as flexmix's ``ICL``. It is BIC plus a penalty for
        rows that no single expert explains (overlapping experts), so it
        favours fewer, well-separated experts than BIC.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        icl : float
        """
        X, Y = self._check_X_y(X, y)
        resp, log_density = self._posterior(X, Y)
        # log(g_z p_z) = log p(y | x) + log h_z at the argmax z
        with np.errstate(divide="ignore"):
            log_lc = np.sum(log_density + np.log(resp.max(axis=1)))
        return float(-2 * log_lc + self.n_parameters() * np.log(len(X)))

    def clusters(self, X, y):
        """The expert most likely to have generated each target.

        Hard assignments, the argmax of :meth:`responsibilities` (flexmix's
        ``clusters()``); without targets, the gate's choice is
        ``predict_gate(X).argmax(axis=1)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Index of the expert (into ``expert_names_``) of each row.
        """
        return self.responsibilities(X, y).argmax(axis=1)

    def summary(self):
        """Per-expert summary of the training fit.

        Returns
        -------
        summary : pandas.DataFrame
            Indexed by expert name: ``mean_gate`` (mean gate weight over the
            training rows), ``effective_samples`` (summed responsibility times
            sample weight), ``log_likelihood``
            (the expert's part of the training log-likelihood, ``sum_i w_i
            h_ik log p(y_i | x_i)``; the parts add up to ``log_likelihood_``)
            and, for a Gaussian regressor, ``noise_std`` (one column per output
            for multi-output targets). With sparse ``routing`` in training,
            ``routed_rows``: the rows (of positive weight) routed to each
            expert at the last E-step. A log-likelihood's share of the total is
            not given: the total can be near zero or of either sign, and a
            share of it means nothing. The table is a few columns wide, so
            that it prints whole in a terminal; the coefficients, with
            standard errors, are in :meth:`coefficient_table`.
        """
        check_is_fitted(self)
        stats = self._training_summary
        table = pd.DataFrame(
            {
                "mean_gate": stats["mean_gate"],
                "effective_samples": stats["effective_samples"],
                "log_likelihood": stats["log_likelihood"],
            },
            index=pd.Index(self.expert_names_, name="expert"),
        )
        if "routed_rows" in stats:  # sparse routing in training
            table["routed_rows"] = stats["routed_rows"]
        if hasattr(self, "noise_variance_"):  # a Gaussian regressor
            std = np.sqrt(self._noise_variance_2d())
            if std.shape[1] == 1:
                table["noise_std"] = std[:, 0]
            else:
                for o in range(std.shape[1]):
                    table[f"noise_std_{o}"] = std[:, o]
        return table

    def coefficient_table(self, X, y, sample_weight=None):
        """Coefficients of the gate and the experts, with standard errors.

        As flexmix's ``summary(refit(model))``: each coefficient's estimate,
        standard error, z value and two-sided p value (normal). The standard
        errors come from the observed information of the mixture
        log-likelihood on the training data ``(X, y)`` at the fit, computed
        exactly by Louis' identity (every parameter at once: the gate's, the
        experts' coefficients and, for a regressor, their noise standard
        deviations, which ``summary()`` shows). They are maximum-likelihood
        standard errors: penalties (``gate_alpha``, a Ridge expert's
        ``alpha``, a LogisticRegression expert's ``C``) are left out of the
        information, so fit with ``gate_alpha=0`` and unpenalised experts for
        flexmix's numbers.

        Needs the linear gate and linear experts: LinearRegression or Ridge
        for a Gaussian regressor (one-dimensional target), PoissonRegressor
        or GammaRegressor (log link) for ``family="poisson"`` or
        ``"gamma"`` (the Gamma shapes are parameters of the information, as
        the Gaussian noise), LogisticRegression for a classifier (each
        expert having seen every class). The gate's
        coefficients are those of each expert against the first
        (``gate: <expert>``), whose are zero.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The training inputs.
        y : array-like of shape (n_samples,)
            The training targets.
        sample_weight : array-like of shape (n_samples,), default=None
            The training sample weights.

        Returns
        -------
        table : pandas.DataFrame
            Indexed by (``part``, ``term``): the part is ``gate: <expert>`` or
            an expert's name, the term ``(Intercept)`` or a feature (for a
            multi-class expert, ``<class>: <feature>`` against the first
            class). Columns ``estimate``, ``std_error``, ``z_value``,
            ``p_value``.

        Raises
        ------
        ValueError
            For other gates or experts, or where the information is not
            positive definite (the fit is not at a strict maximum, or the
            data do not determine some parameter): the message says which.
        """
        X, Y = self._check_X_y(X, y)
        weights = _check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True
        )
        resp, _ = self._posterior(X, Y)
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            names = [f"x{j}" for j in range(X.shape[1])]
        return coefficient_table(
            self, X, Y, resp, weights, list(names), self._is_classifier_moe
        )

    def responsibilities(self, X, y):
        """Posterior probability that each expert generated each target.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        resp : ndarray of shape (n_samples, n_experts)
            Rows sum to one.
        """
        X, Y = self._check_X_y(X, y)
        return self._posterior(X, Y)[0]
