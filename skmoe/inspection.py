"""Displays of a fitted mixture of experts, in scikit-learn's Display style.

Each display accepts a fitted :class:`~skmoe.MixtureOfExpertsRegressor` or
:class:`~skmoe.MixtureOfExpertsClassifier`, or a fitted
:class:`~sklearn.pipeline.Pipeline` whose last step is one. For a pipeline,
``X`` is what the pipeline is given: the displays build their grid in that
input space and send each grid row through the preceding steps' ``transform``,
so the axes show the user's own feature values whatever the preprocessing
(scaling, polynomial features, PCA...). Only when ``X`` is not numeric (a
:class:`~sklearn.compose.ColumnTransformer` encoding string columns, say),
where no grid can be built over it, do the displays grid the transformed data
the mixture sees; their axis labels then say so.

Matplotlib is an optional dependency (``pip install matplotlib``, or the
``plot`` extra: ``pip install ".[plot]"`` from a checkout); it is
imported only when a display is drawn.
"""

import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import is_regressor
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from ._predictive import mixture_log_density

# the largest gate probability at which GateRegionsDisplay draws contours
_CONFIDENCE_LEVELS = (0.5, 0.75, 0.9, 0.99)
# how many held features a title lists before it abbreviates
_MAX_HELD_SHOWN = 4


def check_matplotlib_support(caller_name):
    """Raise a clear ImportError when matplotlib is missing.

    scikit-learn's twin of this helper is private, hence our own.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"{caller_name} requires matplotlib; install it with "
            '`pip install matplotlib` (or `pip install ".[plot]"` from a checkout).'
        ) from exc


def _resolve_estimator(estimator, caller_name):
    """The fitted mixture of experts in ``estimator`` and the steps before it.

    Returns the mixture and a list of fitted transformers (pipeline slices)
    that map what the user passes to what the mixture sees, outermost first;
    the list is empty for a bare mixture.
    """
    from sklearn.pipeline import Pipeline

    from ._base import BaseMixtureOfExperts

    model, steps = estimator, []
    # a pipeline may end in a pipeline: unwrap them all
    while isinstance(model, Pipeline):
        if len(model.steps) > 1:
            steps.append(model[:-1])
        model = model.steps[-1][1]
    if not isinstance(model, BaseMixtureOfExperts):
        got = (
            type(estimator).__name__
            if model is estimator
            else f"a Pipeline whose last step is {_describe(model)}"
        )
        raise TypeError(
            f"{caller_name} needs a fitted MixtureOfExpertsRegressor or "
            "MixtureOfExpertsClassifier, or a fitted Pipeline whose last step is "
            f"one; got {got}."
        )
    check_is_fitted(model)
    return model, steps


def _describe(obj):
    # a pipeline's last step may be "passthrough" or None, not an estimator
    return repr(obj) if obj is None or isinstance(obj, str) else type(obj).__name__


def _one_to_one(steps, input_names, n_input, n_model):
    """Whether the steps map input column j to the mixture's column j.

    Transformers that keep their columns (scalers, imputers: scikit-learn's
    ``OneToOneFeatureMixin``) give out the names they get in; those that
    make or mix columns (polynomial features, PCA) give out new ones. Without
    ``get_feature_names_out``, equal column counts are taken as one-to-one.
    """
    expected = (
        [f"x{j}" for j in range(n_input)]
        if input_names is None
        else [str(name) for name in input_names]
    )
    names = input_names
    try:
        for step in steps:
            names = step.get_feature_names_out(names)
    except (AttributeError, TypeError, ValueError, NotFittedError):
        return n_model == n_input
    return [str(name) for name in names] == expected


def _to_model_input(model, Z):
    """``Z`` as the mixture takes it: dense, named as in fit when it was."""
    if sp.issparse(Z):
        Z = Z.toarray()
    names = getattr(model, "feature_names_in_", None)
    if names is not None and not hasattr(Z, "columns"):
        # a mixture fitted on a DataFrame warns on unnamed rows
        Z = _frame(Z, names)
    return Z


def _frame(rows, names):
    import pandas as pd

    return pd.DataFrame(rows, columns=list(names))


class _Inputs:
    """The data a display grids over, and how grid rows reach the mixture.

    ``X`` is the data as floats in the space the display plots (the user's
    input space, or for non-numeric input to a pipeline the transformed one);
    ``names`` its column names or None, ``transformed`` whether it is the
    transformed space.
    """

    def __init__(self, estimator, X, caller_name):
        self.model, self.steps = _resolve_estimator(estimator, caller_name)
        self.transformed = False
        if not self.steps:
            self.names = getattr(self.model, "feature_names_in_", None)
            self.X = self._as_float(X)
        else:
            self.names = getattr(estimator, "feature_names_in_", None)
            try:
                self.X = self._as_float(X)
            except (TypeError, ValueError):
                # non-numeric columns (categories, strings) admit no grid: use
                # the numeric columns the steps make of them
                self.transformed = True
                self.X = self._as_float(self._transform(X))
                self.names = getattr(self.model, "feature_names_in_", None)
                if self.names is None:
                    try:
                        self.names = self.steps[-1].get_feature_names_out()
                    except (AttributeError, TypeError, ValueError, NotFittedError):
                        self.names = None
        if self.X.ndim != 2:
            raise ValueError(f"X must be two-dimensional, got shape {self.X.shape}.")
        expected = (
            self.model.n_features_in_
            if not self.steps or self.transformed
            else getattr(estimator, "n_features_in_", self.X.shape[1])
        )
        if self.X.shape[1] != expected:
            raise ValueError(
                f"X has {self.X.shape[1]} features, but {caller_name} expects "
                f"{expected}, as the estimator was fitted with."
            )
        if self.names is not None and hasattr(X, "columns") and not self.transformed:
            if [str(c) for c in X.columns] != [str(n) for n in self.names]:
                raise ValueError(
                    "The columns of X must be the feature names seen in fit, in "
                    f"the same order: {list(self.names)}; got {list(X.columns)}."
                )
        self.n_features = self.X.shape[1]

    @staticmethod
    def _as_float(X):
        return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=float)

    def _transform(self, X):
        for step in self.steps:
            X = step.transform(X)
        return X

    def predict_input(self, rows):
        """Grid rows, in the plotted space, as the mixture takes them."""
        if self.steps and not self.transformed:
            if self.names is not None:
                # a pipeline fitted on a DataFrame warns on unnamed rows
                rows = _frame(rows, self.names)
            rows = self._transform(rows)
        return _to_model_input(self.model, rows)

    def name(self, j):
        return str(self.names[j]) if self.names is not None else f"x{j}"

    def label(self, j):
        """Axis label of column ``j``: its name, and the space it lives in."""
        if not self.transformed:
            return self.name(j)
        steps = ", ".join(
            name for step in self.steps for name, _ in step.steps if name is not None
        )
        return f"{self.name(j)} (after {steps})"

    def index(self, feature, param):
        """Column index of ``feature``, an int index or a fitted name."""
        n = self.n_features
        valid_idx = f"integer indices 0 to {n - 1}"
        valid_names = (
            ""
            if self.names is None
            else " or the names " + _short_list([str(s) for s in self.names])
        )
        if isinstance(feature, str):
            if self.names is None:
                raise ValueError(
                    f"{param}={feature!r} is a feature name, but the estimator "
                    "was fitted without feature names (not on a DataFrame); "
                    f"valid are {valid_idx}."
                )
            matches = np.flatnonzero(np.asarray(self.names, dtype=object) == feature)
            if not len(matches):
                raise ValueError(
                    f"{param}: unknown feature {feature!r}; valid are "
                    f"{valid_idx}{valid_names}."
                )
            return int(matches[0])
        if isinstance(feature, numbers.Integral) and not isinstance(feature, bool):
            if -n <= feature < n:
                # negative indices count from the end, as in NumPy
                return int(feature) % n
            raise ValueError(
                f"{param}: feature index {feature} is out of range; valid are "
                f"{valid_idx}{valid_names}."
            )
        raise ValueError(
            f"{param}: {feature!r} is neither a feature index nor a feature "
            f"name; valid are {valid_idx}{valid_names}."
        )

    def gate_columns(self):
        """The plotted columns the gate sees, or None for all or unknown."""
        seen = getattr(self.model.gate_, "features_", None)
        if seen is None:
            return None
        if self.steps and not self.transformed:
            if not _one_to_one(
                self.steps, self.names, self.n_features, self.model.n_features_in_
            ):
                # no column of X corresponds to a column the gate sees
                return None
        return [int(j) for j in seen]

    def held(self, shown):
        """The medians at which the columns not in ``shown`` are held."""
        base = np.nanmedian(self.X, axis=0)
        return {
            self.name(j): float(base[j])
            for j in range(self.n_features)
            if j not in shown
        }


def _short_list(items, max_items=20):
    if len(items) <= max_items:
        return str(items)
    return f"{items[:max_items]} (and {len(items) - max_items} more)"


def _grid_rows(X, columns, values):
    """Rows at the median of X, with ``columns`` set to ``values``."""
    X = np.asarray(X, dtype=float)
    # NaN-aware: a pipeline may impute the missing values of its input
    base = np.nanmedian(X, axis=0)
    rows = np.tile(base, (len(values[0]), 1))
    for col, vals in zip(columns, values, strict=True):
        rows[:, col] = vals
    return rows


def _axis_grid(x, resolution, margin=0.05):
    lo, hi = np.nanmin(x), np.nanmax(x)
    pad = margin * (hi - lo if hi > lo else 1.0)
    return np.linspace(lo - pad, hi + pad, resolution)


def _gate_axes(inputs, features):
    """The two columns a gate-region plot shows (see ``from_estimator``)."""
    seen = inputs.gate_columns()
    if features is None:
        if inputs.n_features < 2:
            raise ValueError(
                "GateRegionsDisplay needs at least two features; X has "
                f"{inputs.n_features}."
            )
        if seen is None:
            return 0, 1
        others = [j for j in range(inputs.n_features) if j not in seen]
        return tuple(int(j) for j in [*seen, *others][:2])
    if isinstance(features, str) or np.ndim(features) != 1 or len(features) != 2:
        raise ValueError(
            f"features must be a pair of feature indices or names, got {features!r}."
        )
    f0, f1 = (inputs.index(f, "features") for f in features)
    if f0 == f1:
        raise ValueError(
            f"features must be two different features, got {features!r} "
            f"(both {inputs.name(f0)!r})."
        )
    if seen is not None:
        unseen = [inputs.name(f) for f in (f0, f1) if f not in seen]
        if unseen:
            warnings.warn(
                f"The gate does not see feature(s) {unseen} (gate_features); "
                "its regions are constant along that axis.",
                UserWarning,
                stacklevel=3,
            )
    return f0, f1


def _held_text(fixed_values):
    """'others at their medians: a=1, b=2, ...', shortened; '' for none."""
    if not fixed_values:
        return ""
    items = [f"{name}={value:.3g}" for name, value in fixed_values.items()]
    if len(items) > _MAX_HELD_SHOWN:
        more = len(items) - _MAX_HELD_SHOWN
        items = [*items[:_MAX_HELD_SHOWN], f"... (+{more} more)"]
    return "others at their medians: " + ", ".join(items)


def _title(main, fixed_values):
    held = _held_text(fixed_values)
    return f"{main}\n{held}" if held else main


def _expert_colors(n_experts):
    """Expert k's colour: colour k of the colour cycle, in every display."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba

    cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color")
    if not cycle:
        cycle = list(plt.get_cmap("tab10").colors)
    return [to_rgba(cycle[k % len(cycle)]) for k in range(n_experts)]


def _point_color(expert_colors):
    """Black, or a grey, for data points: never an expert's colour."""
    from matplotlib.colors import to_rgba

    taken = {tuple(np.round(c[:3], 6)) for c in expert_colors}
    for color in ("k", "0.35", "0.6", "0.8"):
        if tuple(np.round(to_rgba(color)[:3], 6)) not in taken:
            return color
    return "k"  # pragma: no cover - a cycle of all these greys


class GateRegionsDisplay:
    """Which expert the gate trusts most, and how much, over two features.

    Use :meth:`from_estimator`. The other features are held at their median.
    The regions are coloured by the expert with the largest gate probability;
    contour lines mark that largest probability (the gate's confidence).

    Parameters
    ----------
    xx, yy : ndarray of shape (resolution, resolution)
        The grid over the two features.
    expert : ndarray of shape (resolution, resolution)
        Index of the expert with the largest gate weight at each grid point.
    gate_max : ndarray of shape (resolution, resolution)
        That largest gate weight (how sure the gate is).
    X : ndarray of shape (n_samples, 2)
        The two features of the data shown as points.
    expert_names : list of str
    feature_names : tuple of str
        The axis labels.
    fixed_values : dict of str to float, default=None
        The values at which the other features are held, by name; shown in
        the title.

    Attributes
    ----------
    surface_ : matplotlib QuadMesh
        The coloured regions.
    confidence_ : matplotlib ContourSet or None
        Contour lines of the largest gate probability; None where it does not
        cross any of the levels 0.5, 0.75, 0.9 and 0.99 (above 1 / n_experts).
    scatter_ : matplotlib PathCollection
        The data points.
    ax_, figure_ : matplotlib Axes and Figure
    """

    def __init__(
        self,
        xx,
        yy,
        expert,
        gate_max,
        X,
        expert_names,
        feature_names,
        fixed_values=None,
    ):
        self.xx, self.yy = xx, yy
        self.expert, self.gate_max = expert, gate_max
        self.X = X
        self.expert_names = expert_names
        self.feature_names = feature_names
        self.fixed_values = fixed_values

    @classmethod
    def from_estimator(
        cls, estimator, X, features=None, *, grid_resolution=100, ax=None
    ):
        """Compute the gate regions of a fitted estimator and draw them.

        Parameters
        ----------
        estimator : fitted MixtureOfExpertsRegressor or \
                MixtureOfExpertsClassifier, or Pipeline
            A pipeline's last step must be one of the two; ``X`` then goes
            through the steps before it (see the module's docstring).
        X : array-like of shape (n_samples, n_features)
            The data, as the estimator is given it.
        features : pair of int or str, default=None
            The two features on the axes: column indices or names seen in fit
            (``feature_names_in_``). None means the first two columns the gate
            sees (see ``gate_features``; the first two columns when the gate
            sees them all, or when a pipeline's steps change the columns). A
            column the gate does not see gives regions constant along its
            axis, with a warning.
        grid_resolution : int, default=100
        ax : matplotlib Axes, default=None

        Returns
        -------
        display : GateRegionsDisplay
        """
        check_matplotlib_support("GateRegionsDisplay.from_estimator")
        inputs = _Inputs(estimator, X, "GateRegionsDisplay")
        X = inputs.X
        f0, f1 = _gate_axes(inputs, features)
        g0 = _axis_grid(X[:, f0], grid_resolution)
        g1 = _axis_grid(X[:, f1], grid_resolution)
        xx, yy = np.meshgrid(g0, g1)
        rows = _grid_rows(X, (f0, f1), (xx.ravel(), yy.ravel()))
        gate = inputs.model.predict_gate(inputs.predict_input(rows))
        display = cls(
            xx,
            yy,
            gate.argmax(axis=1).reshape(xx.shape),
            gate.max(axis=1).reshape(xx.shape),
            X[:, [f0, f1]],
            list(inputs.model.expert_names_),
            (inputs.label(f0), inputs.label(f1)),
            fixed_values=inputs.held((f0, f1)),
        )
        return display.plot(ax=ax)

    def plot(self, ax=None):
        """Draw the regions, the gate's confidence and the points.

        Parameters
        ----------
        ax : matplotlib Axes, default=None

        Returns
        -------
        display : GateRegionsDisplay
        """
        check_matplotlib_support("GateRegionsDisplay.plot")
        import matplotlib.pyplot as plt
        from matplotlib.colors import ListedColormap
        from matplotlib.lines import Line2D

        if ax is None:
            _, ax = plt.subplots()
        K = len(self.expert_names)
        colors = _expert_colors(K)
        self.surface_ = ax.pcolormesh(
            self.xx,
            self.yy,
            self.expert,
            cmap=ListedColormap(colors),
            vmin=-0.5,
            vmax=K - 0.5,
            alpha=0.35,
            shading="auto",
        )
        # the largest gate probability is at least 1 / K everywhere: levels at
        # or below it mark nothing, and contour warns on levels out of range
        lo, hi = np.nanmin(self.gate_max), np.nanmax(self.gate_max)
        levels = [t for t in _CONFIDENCE_LEVELS if t > 1 / K + 1e-9 and lo < t < hi]
        handles = [
            plt.Rectangle((0, 0), 1, 1, color=colors[k], alpha=0.5) for k in range(K)
        ]
        labels = list(self.expert_names)
        self.confidence_ = None
        if levels:
            self.confidence_ = ax.contour(
                self.xx,
                self.yy,
                self.gate_max,
                levels=levels,
                colors="0.2",
                linewidths=0.8,
                linestyles="dashed",
            )
            ax.clabel(self.confidence_, fmt="%.2f", fontsize="x-small")
            handles.append(Line2D([], [], color="0.2", lw=0.8, ls="dashed"))
            labels.append("largest gate prob.")
        self.scatter_ = ax.scatter(
            self.X[:, 0],
            self.X[:, 1],
            s=6,
            c=_point_color(colors),
            alpha=0.5,
            linewidths=0,
        )
        ax.legend(handles, labels, title="most trusted expert", loc="best")
        ax.set_xlabel(self.feature_names[0])
        ax.set_ylabel(self.feature_names[1])
        ax.set_title(_title("Gate: most trusted expert", self.fixed_values))
        self.ax_, self.figure_ = ax, ax.figure
        return self


class ExpertFitDisplay:
    """Each expert's fit over one feature, with the mixture density shaded.

    For a fitted :class:`~skmoe.MixtureOfExpertsRegressor` with a single
    target (or a pipeline ending in one). Use :meth:`from_estimator`; the
    other features are held at their median, which the title states.

    Parameters
    ----------
    grid : ndarray of shape (resolution,)
        Values of the feature.
    y_grid : ndarray of shape (y_resolution,)
        Target values at which the density is evaluated.
    density : ndarray of shape (y_resolution, resolution)
        Predictive density p(y | x) on the grid.
    expert_means : ndarray of shape (resolution, n_experts)
    gate : ndarray of shape (resolution, n_experts)
    x, y : ndarray of shape (n_samples,)
        The data shown as points.
    expert_names : list of str
    feature_name : str
        The x axis label.
    fixed_values : dict of str to float, default=None
        The values at which the other features are held, by name; shown in
        the title.

    Attributes
    ----------
    density_ : matplotlib QuadMesh
    lines_ : list of matplotlib Line2D, one per expert
        In the colours of the colour cycle, as the experts' regions of
        :class:`GateRegionsDisplay`.
    scatter_ : matplotlib PathCollection
        The data points, in black or grey (no expert's colour).
    ax_, figure_ : matplotlib Axes and Figure
    """

    def __init__(
        self,
        grid,
        y_grid,
        density,
        expert_means,
        gate,
        x,
        y,
        expert_names,
        feature_name,
        fixed_values=None,
    ):
        self.grid, self.y_grid, self.density = grid, y_grid, density
        self.expert_means, self.gate = expert_means, gate
        self.x, self.y = x, y
        self.expert_names = expert_names
        self.feature_name = feature_name
        self.fixed_values = fixed_values

    @classmethod
    def from_estimator(
        cls, estimator, X, y, feature=0, *, grid_resolution=200, ax=None
    ):
        """Compute the experts' fits and the density, and draw them.

        Parameters
        ----------
        estimator : fitted MixtureOfExpertsRegressor, or Pipeline
            With a one-dimensional target. A pipeline's last step must be a
            MixtureOfExpertsRegressor; ``X`` then goes through the steps
            before it (see the module's docstring).
        X : array-like of shape (n_samples, n_features)
            The data, as the estimator is given it.
        y : array-like of shape (n_samples,)
        feature : int or str, default=0
            The feature on the x axis: a column index or a name seen in fit
            (``feature_names_in_``).
        grid_resolution : int, default=200
        ax : matplotlib Axes, default=None

        Returns
        -------
        display : ExpertFitDisplay
        """
        check_matplotlib_support("ExpertFitDisplay.from_estimator")
        inputs = _Inputs(estimator, X, "ExpertFitDisplay")
        if not is_regressor(inputs.model) or np.ndim(y) != 1:
            raise ValueError(
                "ExpertFitDisplay needs a fitted MixtureOfExpertsRegressor and a "
                "one-dimensional y."
            )
        X = inputs.X
        y = np.asarray(y, dtype=float)
        feature = inputs.index(feature, "feature")
        grid = _axis_grid(X[:, feature], grid_resolution)
        rows = _grid_rows(X, (feature,), (grid,))
        model = inputs.model
        comp = model.predict_components(inputs.predict_input(rows))
        y_grid = _axis_grid(y, grid_resolution)
        family = getattr(model, "family", "gaussian")
        if family == "gaussian":
            log_dens = mixture_log_density(
                np.tile(y_grid, (len(grid), 1)), comp.weight, comp.mean, comp.std
            )
        else:
            # the family's own density, at targets it can have (counts >= 0,
            # Gamma targets > 0), from the model's conditional log-likelihood
            low = 0.0 if family == "poisson" else 1e-3 * np.min(y[y > 0])
            y_grid = y_grid[y_grid >= low] if np.any(y_grid >= low) else y_grid
            log_dens = model.conditional_log_likelihood(
                inputs.predict_input(np.repeat(rows, len(y_grid), axis=0)),
                np.tile(y_grid, len(grid)),
            ).reshape(len(grid), len(y_grid))
        display = cls(
            grid,
            y_grid,
            np.exp(log_dens).T,
            comp.mean,
            comp.weight,
            X[:, feature],
            y,
            list(inputs.model.expert_names_),
            inputs.label(feature),
            fixed_values=inputs.held((feature,)),
        )
        return display.plot(ax=ax)

    def plot(self, ax=None):
        """Draw the density, the experts' lines and the points.

        Parameters
        ----------
        ax : matplotlib Axes, default=None

        Returns
        -------
        display : ExpertFitDisplay
        """
        check_matplotlib_support("ExpertFitDisplay.plot")
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        colors = _expert_colors(len(self.expert_names))
        # the darkest shade a mid grey, so that the dark points stay visible
        self.density_ = ax.pcolormesh(
            self.grid,
            self.y_grid,
            self.density,
            cmap="Greys",
            vmin=0.0,
            vmax=1.5 * max(float(np.nanmax(self.density)), np.finfo(float).tiny),
            shading="auto",
        )
        self.scatter_ = ax.scatter(
            self.x, self.y, s=4, c=_point_color(colors), alpha=0.4, linewidths=0
        )
        self.lines_ = []
        for k, name in enumerate(self.expert_names):
            # fade each expert's line where the gate does not trust it
            (line,) = ax.plot(
                self.grid, self.expert_means[:, k], lw=1.5, color=colors[k], label=name
            )
            trusted = np.where(self.gate[:, k] > 0.5, self.expert_means[:, k], np.nan)
            ax.plot(self.grid, trusted, lw=3.5, color=colors[k])
            self.lines_.append(line)
        ax.set_ylim(self.y_grid[0], self.y_grid[-1])
        ax.set_xlabel(self.feature_name)
        ax.set_ylabel("y")
        ax.legend(loc="best", title="expert (thick: gate > 0.5)")
        name = self.feature_name
        ax.set_title(_title(f"Experts' fits along {name}", self.fixed_values))
        self.ax_, self.figure_ = ax, ax.figure
        return self


class ConvergenceDisplay:
    """The training log-likelihood at each EM iteration.

    Parameters
    ----------
    log_likelihood_curve : ndarray of shape (n_iter,)

    Attributes
    ----------
    line_ : matplotlib Line2D
    ax_, figure_ : matplotlib Axes and Figure
    """

    def __init__(self, log_likelihood_curve):
        self.log_likelihood_curve = log_likelihood_curve

    @classmethod
    def from_estimator(cls, estimator, *, ax=None):
        """Draw the log-likelihood curve of a fitted estimator.

        Parameters
        ----------
        estimator : fitted MixtureOfExpertsRegressor or \
                MixtureOfExpertsClassifier, or Pipeline
            A pipeline's last step must be one of the two.
        ax : matplotlib Axes, default=None

        Returns
        -------
        display : ConvergenceDisplay
        """
        check_matplotlib_support("ConvergenceDisplay.from_estimator")
        model, _ = _resolve_estimator(estimator, "ConvergenceDisplay")
        return cls(np.asarray(model.log_likelihood_curve_)).plot(ax=ax)

    def plot(self, ax=None):
        """Draw the curve.

        Parameters
        ----------
        ax : matplotlib Axes, default=None

        Returns
        -------
        display : ConvergenceDisplay
        """
        check_matplotlib_support("ConvergenceDisplay.plot")
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        n = len(self.log_likelihood_curve)
        (self.line_,) = ax.plot(
            np.arange(1, n + 1), self.log_likelihood_curve, marker="o", ms=3
        )
        ax.set_xlabel("EM iteration")
        ax.set_ylabel("training log-likelihood")
        ax.set_title("EM log-likelihood per iteration")
        self.ax_, self.figure_ = ax, ax.figure
        return self
