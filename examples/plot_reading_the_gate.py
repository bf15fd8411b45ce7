"""
Reading the gate: which expert handles which region
===================================================

The gate of a fitted mixture says, for every input, how much each expert is
trusted. On data drawn from a known mixture we can check what it learned: the
regions where each expert wins, the experts' lines, and how often the
responsibilities (the gate updated by the observed target) pick the expert
that really generated a row.
"""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from skmoe import MixtureOfExpertsRegressor
from skmoe.datasets import make_moe_regression
from skmoe.inspection import ConvergenceDisplay, GateRegionsDisplay

X, y, truth = make_moe_regression(
    n_samples=1500,
    n_features=2,
    n_experts=3,
    noise=0.3,
    return_params=True,
    random_state=3,
)
moe = MixtureOfExpertsRegressor(n_experts=3, n_init=3, random_state=0).fit(X, y)

# %%
# Fitted experts against the true ones
# ------------------------------------
# The experts come in an arbitrary order; match them to the true experts by
# their coefficients (the Hungarian algorithm on the distances).
fitted = np.column_stack(
    [[e.intercept_ for e in moe.experts_], [e.coef_ for e in moe.experts_]]
)
true = np.column_stack([truth.intercept, truth.coef])
cost = np.linalg.norm(fitted[:, None, :] - true[None, :, :], axis=2)
rows, match = linear_sum_assignment(cost)
table = pd.DataFrame(
    {
        "true expert": match,
        "fitted intercept, coef": [np.round(fitted[k], 2) for k in rows],
        "true intercept, coef": [np.round(true[j], 2) for j in match],
        "mean gate": moe.summary()["mean_gate"].to_numpy().round(3),
    },
    index=moe.expert_names_,
)
print(table.to_string())

# %%
# The gate against the truth
# --------------------------
# Hard assignments: the expert with the largest gate weight (from x alone), and
# the one with the largest responsibility (from x and y). Both are compared
# with the expert that generated each row.
# the generating expert of each row, numbered as the fitted experts
to_fitted = dict(zip(match, rows, strict=True))
true_expert = np.array([to_fitted[j] for j in truth.expert])
by_gate = moe.predict_gate(X).argmax(axis=1)
by_resp = moe.responsibilities(X, y).argmax(axis=1)
print(f"largest gate: true expert for {np.mean(by_gate == true_expert):.1%} of rows")
print(
    f"largest responsibility: true expert for {np.mean(by_resp == true_expert):.1%}"
    " of rows"
)

# %%
# The regions, drawn
# ------------------
# Left: the fitted gate's regions (the expert with the largest gate weight),
# with the data. Middle: the rows coloured by the expert that generated them.
# Far from the borders the two agree; near them the gate is soft. Right: the
# log-likelihood at each EM iteration.
fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
GateRegionsDisplay.from_estimator(moe, X, ax=axes[0])
axes[0].set_title("fitted gate")
# colours as in the left panel: tab10 colour k for (the match of) expert k
axes[1].scatter(X[:, 0], X[:, 1], c=true_expert, cmap="tab10", vmin=0, vmax=9, s=6)
axes[1].set_title("true expert of each row")
axes[1].set_xlabel("x0")
axes[1].set_ylabel("x1")
ConvergenceDisplay.from_estimator(moe, ax=axes[2])
axes[2].set_title("EM log-likelihood")
fig.tight_layout()
plt.show()
