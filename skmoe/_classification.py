"""MixtureOfExpertsClassifier: experts' class probabilities as the likelihood."""

import numpy as np
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.linear_model import LogisticRegression
from sklearn.utils.metaestimators import available_if

from ._backends._dask import is_dask_collection, map_row_blocks
from ._base import BaseMixtureOfExperts
from ._em._online import online_partial_fit, supports_partial_fit
from ._likelihoods import CategoricalLikelihood


class MixtureOfExpertsClassifier(ClassifierMixin, BaseMixtureOfExperts):
    """Mixture of experts classifier (Jacobs, Jordan, Nowlan & Hinton, 1991).

    The class probabilities are a gated mixture of the experts'::

        p(y | x) = sum_k g_k(x) p_k(y | x)

    where ``g(x)`` is a softmax gate over the inputs and ``p_k`` is the
    ``predict_proba`` of any scikit-learn classifier that accepts
    ``sample_weight``, aligned to the full ``classes_`` even when an expert's
    weighted data lacks a class. Fitted by expectation-maximisation: the
    E-step computes each expert's responsibility for each row, the M-step
    refits every expert with those responsibilities as sample weights and the
    gate on the responsibilities as soft targets.

    Parameters
    ----------
    estimator : estimator, default=None
        Expert template, cloned ``n_experts`` times. Must accept
        ``sample_weight`` in ``fit`` and have ``predict_proba``. None means
        :class:`~sklearn.linear_model.LogisticRegression`.
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
        parameters skmoe owns: LogisticRegression experts (L2 penalty
        ``||coef||^2 / (2 C)`` or none, no ``class_weight``). Other experts
        raise a ValueError naming them. It needs ``gate="linear"`` without
        ``gate_features`` or ``gate_load_balance``.
    gradient_solver : {"lbfgs", "adam"}, default="lbfgs"
        Optimiser of ``training="gradient"``: full-batch L-BFGS-B, or
        mini-batch Adam (the step is divided by 5 after 2 epochs that do not
        lower the objective by ``tol``; training stops after 4 divisions and
        keeps the best epoch's parameters).
    batch_size : int or "auto", default="auto"
        Rows per Adam mini-batch (``gradient_solver="adam"``); "auto" is
        ``min(200, n_samples)``, as in MLPClassifier.
    learning_rate_init : float, default=0.01
        Adam's step size (``gradient_solver="adam"``), on parameters of
        standardised inputs. Larger than the MLP's 1e-3: a sharp gate needs
        coefficients of tens, and Adam moves each by about one step per
        update.
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
        the standardised inputs, and the further
        ``n_init - 1`` restarts from random responsibilities, which explore
        other optima; "random" draws every start's responsibilities from a
        flat Dirichlet.
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
        parallel through joblib. None means 1 unless in a
        :obj:`joblib.parallel_backend` context; ``with
        joblib.parallel_backend("dask"):`` spreads them over a Dask cluster.
        The fit is the same for any ``n_jobs`` and backend.
    device : {"cpu", "cuda"}, default="cpu"
        Where EM runs. Only "cpu" (NumPy and numba) fits a classifier yet;
        "cuda" (the CuPy path of the regressor) raises a ValueError.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation; an int gives reproducible fits.
    verbose : int, default=0
        Print the log-likelihood and its change at each EM iteration.
    warm_start : bool, default=False
        Start EM from the previous fit's experts and gate (``n_init`` is then
        ignored).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    experts_ : list of estimators
        The fitted experts. They were fitted on label codes
        ``0 .. n_classes - 1``; an expert whose weighted data held a single
        class is a :class:`~sklearn.dummy.DummyClassifier`.
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
    log_likelihood_ : float
        Training log-likelihood, ``sum_i w_i log p(y_i | x_i)``, at the kept
        parameters (for "sem" and for experts whose fit is not exact, such
        as trees, those of its best iteration; after
        :meth:`partial_fit`, that of the last batch).
    log_likelihood_curve_ : ndarray of shape (`n_iter_`,)
        The training log-likelihood ``sum_i w_i log p(y_i | x_i)`` after each
        EM iteration (L-BFGS iteration, Adam epoch, or :meth:`partial_fit`
        batch), whatever the ``training``; monotone for soft EM
        (penalty aside), not for "cem" or "sem".
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
    MixtureOfExpertsRegressor : The regression counterpart.
    sklearn.ensemble.StackingClassifier : Combines experts with a fixed,
        input-independent meta-learner instead of a gate.

    Examples
    --------
    >>> from skmoe import MixtureOfExpertsClassifier
    >>> from skmoe.datasets import make_moe_classification
    >>> X, y = make_moe_classification(n_samples=500, random_state=0)
    >>> clf = MixtureOfExpertsClassifier(n_experts=2, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    """

    _is_classifier_moe = True

    def _default_expert(self):
        return LogisticRegression()

    @available_if(supports_partial_fit)
    @_fit_context(prefer_skip_nested_validation=False)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Update the mixture with one mini-batch (online generalised EM).

        The first call starts from k-means responsibilities of the batch, as
        ``fit`` does; each call then computes the batch's responsibilities
        and moves the model a step ``(learning_offset + t) **
        -learning_decay`` towards the batch's M-step: the expert's own
        ``partial_fit`` with the responsibilities as ``sample_weight`` (e.g.
        SGDClassifier(loss="log_loss"), GaussianNB), or a Newton step for
        LogisticRegression experts (kept as reference-category softmax
        models, L2 ``1 / C`` on standardised coefficients) and for the gate.
        ``max_iter``, ``tol``, ``n_init`` and ``training`` do not apply.
        Available only when every expert can be updated so; otherwise
        accessing it raises an AttributeError caused by a ValueError that
        names the expert.
        After ``fit`` it continues from the fitted gate (linear and logistic
        experts restart their statistics from the batch).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A batch of inputs.
        y : array-like of shape (n_samples,)
            Its labels.
        classes : array-like of shape (n_classes,), default=None
            Every class that may appear; required on the first call (as in
            :meth:`sklearn.linear_model.SGDClassifier.partial_fit`), optional
            afterwards, where it must be the same.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative row weights.

        Returns
        -------
        self : object
            The updated estimator; ``log_likelihood_`` is that of the batch
            after its update and ``n_iter_`` the number of batches seen.
        """
        return online_partial_fit(self, X, y, sample_weight, classes)

    def _likelihood_for(self, y, sample_weight):
        return CategoricalLikelihood.from_targets(y, sample_weight)

    def _likelihood_of_classes(self, classes):
        return CategoricalLikelihood(np.asarray(classes))

    def predict_proba(self, X):
        """Class probabilities of the mixture, ``sum_k g_k(x) p_k(y | x)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``; rows sum to one. Given a Dask
            array, a Dask array computed block by block.
        """
        if is_dask_collection(X):
            return map_row_blocks(self, self.predict_proba, X, len(self.classes_))
        X = self._check_X(X)
        gate = self._routed_gate(X)
        return np.einsum("nk,nkc->nc", gate, self._routed_outputs(X, gate))

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """Most probable class under the mixture.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Given a Dask array, a Dask array computed block by block.
        """
        if is_dask_collection(X):
            return map_row_blocks(
                self, self.predict, X, dtype=np.asarray(self.classes_).dtype
            )
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def predict_expert(self, X):
        """Each expert's predicted class, regardless of the gate.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_experts : ndarray of shape (n_samples, n_experts)
        """
        proba = self._expert_outputs(self._check_X(X))
        return self.classes_[np.argmax(proba, axis=2)]
