"""
Many small experts with sparse routing
======================================

With many experts, each row need not visit them all in training. With
``routing="top_k"`` a row is fitted only by its ``routing_k`` experts of
largest gate weight (as in sparse mixtures of experts since Shazeer et al.
2017); with ``routing="expert_choice"`` every expert takes a fixed capacity of
rows, so that none is starved (Zhou et al. 2022). Here sixteen linear experts,
dense and routed, are set against ensembles of sixteen members: bagged linear
models and a random forest of sixteen trees.
"""

import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.ensemble import BaggingRegressor, RandomForestRegressor
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split

from skmoe import MixtureOfExpertsRegressor
from skmoe.datasets import make_moe_regression

# %%
# Data from a mixture of sixteen linear regimes
# ---------------------------------------------
X, y = make_moe_regression(
    n_samples=6000, n_features=4, n_experts=16, noise=0.3, random_state=0
)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

models = {
    "16 experts, dense EM": MixtureOfExpertsRegressor(n_experts=16, random_state=0),
    "16 experts, top-2 routing": MixtureOfExpertsRegressor(
        n_experts=16, routing="top_k", routing_k=2, random_state=0
    ),
    "16 experts, expert choice": MixtureOfExpertsRegressor(
        n_experts=16, routing="expert_choice", random_state=0
    ),
    "bagging, 16 linear models": BaggingRegressor(
        LinearRegression(), n_estimators=16, random_state=0
    ),
    "random forest, 16 trees": RandomForestRegressor(n_estimators=16, random_state=0),
}
print(f"{'model':28s} {'test R^2':>8s} {'fit s':>6s}")
for name, model in models.items():
    start = time.perf_counter()
    model.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    score = r2_score(y_test, model.predict(X_test))
    print(f"{name:28s} {score:8.3f} {seconds:6.2f}")

# %%
# How the rows are shared among the experts
# -----------------------------------------
# ``summary()`` gives each expert's weight in the fit (``effective_samples``)
# and, under sparse routing, the rows routed to it (``routed_rows``). Top-2
# routing lets the gate concentrate rows on a few experts; expert choice
# gives every expert its capacity, ``ceil(1.25 * n / 16)`` rows.
fig, ax = plt.subplots(figsize=(7, 4))
width = 0.28
for j, name in enumerate(
    ["16 experts, dense EM", "16 experts, top-2 routing", "16 experts, expert choice"]
):
    summary = models[name].summary()
    ax.bar(
        np.arange(16) + (j - 1) * width,
        np.sort(summary["effective_samples"].to_numpy())[::-1],
        width,
        label=name,
    )
    if "routed_rows" in summary:
        print(f"{name}: routed rows per expert {summary['routed_rows'].tolist()}")
ax.set_xlabel("expert (sorted by weight)")
ax.set_ylabel("effective samples")
ax.legend()
fig.tight_layout()
