"""How often EM reaches the true optimum on known-mixture data.

For K in {2, 3, 4, 6}, 10 seeds and noise in {0.1, 0.5} (80 data sets of
1000 rows from ``make_moe_regression``), count the fits whose training
log-likelihood is within 5 nats of the true model's or above it.

    python benchmarks/bench_init.py            # default: n_init=1
    python benchmarks/bench_init.py '{"n_init": 5}'

The one argument is a JSON object of estimator parameters.
"""

import json
import sys
import warnings

from skmoe import MixtureOfExpertsRegressor
from skmoe.datasets import make_moe_regression

warnings.simplefilter("ignore")
kw = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
good = total = 0
for K in [2, 3, 4, 6]:
    for seed in range(10):
        for noise in [0.1, 0.5]:
            X, y, truth = make_moe_regression(
                n_samples=1000,
                n_experts=K,
                noise=noise,
                return_params=True,
                random_state=seed,
            )
            est = MixtureOfExpertsRegressor(n_experts=K, random_state=0, **kw)
            est.fit(X, y)
            good += est.log_likelihood_ > truth.log_likelihood - 5
            total += 1
print(f"{kw or 'defaults'}: true optimum reached in {good} / {total} fits")
