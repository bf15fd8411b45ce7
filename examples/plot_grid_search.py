"""
Tuning the number of experts and the experts in a pipeline
===========================================================

A mixture of experts is an ordinary scikit-learn estimator: it sits in a
:class:`~sklearn.pipeline.Pipeline`, and
:class:`~sklearn.model_selection.GridSearchCV` tunes ``n_experts`` together
with the experts' own hyper-parameters, reached as
``<step>__estimator__<param>``.
"""

import warnings

import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor

from skmoe import MixtureOfExpertsRegressor
from skmoe.datasets import make_moe_regression

X, y = make_moe_regression(
    n_samples=800, n_features=3, n_experts=3, noise=0.3, random_state=0
)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

# %%
# A pipeline with ridge experts
# -----------------------------
# Every expert is a clone of the template :class:`~sklearn.linear_model.Ridge`;
# the grid runs over the number of experts and the experts' penalty.
pipe = Pipeline(
    [
        ("scale", StandardScaler()),
        ("moe", MixtureOfExpertsRegressor(Ridge(), tol=1e-4, random_state=0)),
    ]
)
param_grid = {
    "moe__n_experts": [1, 2, 3],
    "moe__estimator__alpha": [0.1, 1000.0],
}
search = GridSearchCV(pipe, param_grid, cv=3).fit(X_train, y_train)

# mean CV R^2, one row per number of experts, one column per penalty
results = pd.DataFrame(search.cv_results_)
print(
    results.pivot_table(
        index="param_moe__n_experts",
        columns="param_moe__estimator__alpha",
        values="mean_test_score",
    ).round(3)
)
print(f"\nbest: {search.best_params_}, held-out R^2 {search.score(X_test, y_test):.3f}")

# %%
# The expert itself is a parameter
# --------------------------------
# A list of grids compares kinds of experts, each with its own
# hyper-parameters. Tree experts are refitted by a greedy algorithm, so EM is no
# longer guaranteed to increase the likelihood at every step; a few dozen
# iterations are enough here.
param_grid = [
    {"moe__estimator": [Ridge(alpha=0.1)], "moe__n_experts": [3]},
    {
        "moe__estimator": [DecisionTreeRegressor(random_state=0)],
        "moe__estimator__max_depth": [2, 4],
        "moe__n_experts": [3],
        "moe__max_iter": [30],
    },
]
with warnings.catch_warnings():
    # tree experts stop at max_iter without meeting tol; expected here
    warnings.simplefilter("ignore", ConvergenceWarning)
    search = GridSearchCV(pipe, param_grid, cv=3).fit(X_train, y_train)
results = pd.DataFrame(search.cv_results_)
columns = ["param_moe__estimator", "param_moe__estimator__max_depth"]
print(results[[*columns, "mean_test_score"]].round(3).to_string(index=False))

# %%
# The fitted mixture inside the best pipeline
# -------------------------------------------
# ``best_estimator_`` is refitted on all training rows; its mixture of experts
# is the ``"moe"`` step.
best_moe = search.best_estimator_.named_steps["moe"]
print(best_moe.summary().round(3).to_string())
