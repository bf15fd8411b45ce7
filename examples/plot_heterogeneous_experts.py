"""
Heterogeneous experts: a different model in each region
=======================================================

``estimators=[(name, estimator), ...]`` gives each expert its own kind of
model, as in :class:`~sklearn.ensemble.StackingRegressor`. Here the target is a
straight line for negative inputs and a staircase for positive ones: a linear
expert takes the line, a shallow decision tree the steps, and the gate learns the
border between them.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import KFold, cross_val_score
from sklearn.tree import DecisionTreeRegressor

from skmoe import MixtureOfExpertsRegressor
from skmoe.inspection import ExpertFitDisplay

rng = np.random.default_rng(0)
x = rng.uniform(-3, 3, 400)
steps = np.where(x < 1.5, 3.0, -2.0)
y = np.where(x < 0, 3 * x + 4, steps) + 0.3 * rng.standard_normal(x.size)
X = x[:, None]

# %%
# One linear expert and one tree
# ------------------------------
# Each expert's parameters are reachable by its name, e.g.
# ``tree__max_depth``.
moe = MixtureOfExpertsRegressor(
    estimators=[
        ("linear", LinearRegression()),
        ("tree", DecisionTreeRegressor(max_depth=2, random_state=0)),
    ],
    n_init=3,
    max_iter=50,
    tol=1e-4,
    random_state=0,
)
moe.fit(X, y)
print(f"the tree expert's depth: {moe.get_params()['tree__max_depth']}\n")
print(moe.summary().round(3).to_string())

# where does the gate trust each expert?
grid = np.linspace(-3, 3, 601)[:, None]
gate = moe.predict_gate(grid)
for k, name in enumerate(moe.expert_names_):
    region = grid[gate[:, k] > 0.5, 0]
    print(f"{name}: gate > 0.5 on x in [{region.min():.2f}, {region.max():.2f}]")

# %%
# Compared with mixtures of one kind
# ----------------------------------
# With the same number of experts, two linear experts cannot make the steps,
# and two depth-2 trees have too few leaves to follow the line.
candidates = {
    "linear + tree": moe,
    "2 linear": MixtureOfExpertsRegressor(n_experts=2, random_state=0),
    "2 trees": MixtureOfExpertsRegressor(
        DecisionTreeRegressor(max_depth=2, random_state=0),
        n_experts=2,
        max_iter=50,
        tol=1e-4,
        random_state=0,
    ),
}
cv = KFold(5, shuffle=True, random_state=0)
for name, est in candidates.items():
    scores = cross_val_score(est, X, y, cv=cv)
    print(f"  {name:14s} CV R^2 {scores.mean():.3f} +- {scores.std():.3f}")

# %%
# Each expert's fit, thick where the gate trusts it
# -------------------------------------------------
ExpertFitDisplay.from_estimator(moe, X, y)
plt.show()
