"""MixtureOfExpertsClassifier: experts' class probabilities as the likelihood."""

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.multiclass import check_classification_targets

from ._base import BaseMixtureOfExperts
from ._experts import fit_experts

# Expert probabilities are floored here in the likelihood: a tree leaf that
# never saw a class gives it probability 0, which would make log p = -inf.
_PROBA_FLOOR = 1e-12


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
        the standardised inputs, and the further
        ``n_init - 1`` restarts from random responsibilities, which explore
        other optima; "random" draws every start's responsibilities from a
        flat Dirichlet.
    top_k : int, default=None
        Sparse gating at prediction: keep only the ``top_k`` largest gate
        weights per row, renormalised, and call each expert only on the
        rows routed to it. None uses every expert. Densities
        (``score_samples``, ``responsibilities``) always use every expert.
    n_jobs : int, default=None
        Jobs for fitting experts, and running the ``n_init`` restarts, in
        parallel through joblib. None means 1 unless in a
        :obj:`joblib.parallel_backend` context; ``with
        joblib.parallel_backend("dask"):`` spreads them over a Dask cluster.
        The fit is the same for any ``n_jobs`` and backend.
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
    gate_ : SoftmaxGate
        The fitted gate; ``gate_.coef_`` and ``gate_.intercept_`` hold its
        parameters (expert 0 is the reference, with zero coefficients).
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

    def _default_expert(self):
        return LogisticRegression()

    def _validate_targets(self, y, *, fitting, sample_weight=None):
        if fitting:
            check_classification_targets(y)
            self.classes_, codes = np.unique(y, return_inverse=True)
            # rows of zero weight are left out: their labels do not count
            present = np.unique(codes[sample_weight > 0])
            if present.size < 2:
                raise ValueError(
                    "The classifier needs samples of at least 2 classes in the "
                    f"data, but the data contains only one class: "
                    f"{self.classes_[present[0]]!r}."
                )
            return codes
        codes = np.searchsorted(self.classes_, y)
        codes = np.clip(codes, 0, self.classes_.size - 1)
        unknown = self.classes_[codes] != y
        if np.any(unknown):
            raise ValueError(
                f"y contains labels not seen in fit: {np.unique(y[unknown])!r}."
            )
        return codes

    def _kmeans_target_columns(self, Y):
        # cluster on the inputs alone: clusters split by label would make
        # class-pure experts that a gate over x cannot tell apart
        return np.empty((Y.shape[0], 0))

    def _m_step_experts(self, X, Y, weights):
        self.experts_ = fit_experts(
            self._templates,
            X,
            Y,
            weights,
            is_classifier=True,
            y_is_1d=True,
            n_jobs=self.n_jobs,
        )
        return self._expert_outputs(X)

    def _expert_outputs(self, X, experts=None, rows=None):
        """Expert class probabilities on the full ``classes_``,
        shape (n_samples, n_experts, n_classes)."""
        experts = self.experts_ if experts is None else experts
        proba = np.zeros((X.shape[0], len(experts), self.classes_.size))
        for k, est in enumerate(experts):
            idx = slice(None) if rows is None else rows[k]
            Xk = X[idx]
            if Xk.shape[0]:
                # experts were fitted on label codes: est.classes_ indexes ours
                aligned = np.zeros((Xk.shape[0], self.classes_.size))
                aligned[:, np.asarray(est.classes_, dtype=np.intp)] = est.predict_proba(
                    Xk
                )
                proba[idx, k, :] = aligned
        return proba

    def _log_prob_from_outputs(self, outputs, Y):
        p = np.take_along_axis(outputs, Y[:, None, None], axis=2)[:, :, 0]
        return np.log(np.maximum(p, _PROBA_FLOOR))

    def predict_proba(self, X):
        """Class probabilities of the mixture, ``sum_k g_k(x) p_k(y | x)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``; rows sum to one.
        """
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
        """
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
