"""
Gates: linear, a small gating network, and a tree of gates
===========================================================

Two experts, each in charge of two opposite quadrants of the plane (an XOR
pattern): no line separates their regions, so a linear softmax gate cannot
route the rows, while a gate with one hidden layer (``gate="mlp"``) can. A
hierarchical gate (``gate="hierarchical"``, Jordan & Jacobs 1994) with four
leaves splits the plane twice and gets there with linear nodes only.
"""

import matplotlib.pyplot as plt
import numpy as np

from skmoe import MixtureOfExpertsRegressor
from skmoe.inspection import GateRegionsDisplay

rng = np.random.RandomState(0)
X = rng.uniform(-1, 1, size=(600, 2))
region = (X[:, 0] * X[:, 1] > 0).astype(int)
y = np.where(region == 1, 2.0, -2.0) + 0.1 * rng.standard_normal(600)

models = {
    "linear gate": MixtureOfExpertsRegressor(n_experts=2, random_state=0),
    "MLP gate (8,)": MixtureOfExpertsRegressor(
        n_experts=2, gate="mlp", gate_hidden_layer_sizes=(8,), random_state=0
    ),
    "hierarchical 2x2": MixtureOfExpertsRegressor(
        n_experts=4, gate="hierarchical", n_init=3, random_state=0
    ),
}
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
for ax, (name, model) in zip(axes, models.items(), strict=True):
    model.fit(X, y)
    GateRegionsDisplay.from_estimator(model, X, grid_resolution=60, ax=ax)
    ax.set_title(name)
    print(
        f"{name:18} log-likelihood per row {model.log_likelihood_ / len(X):7.3f}"
        f"   BIC {model.bic(X, y):9.1f}"
    )
plt.tight_layout()
