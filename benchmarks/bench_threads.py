"""Small fits with default threads against one thread, idle and beside a busy process.

Run from the repository root::

    python benchmarks/bench_threads.py

Each row is the median of nine fits (after a warm-up fit) in a fresh
process: with the default thread settings, and with ``OMP_NUM_THREADS=1
OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1``; on the machine as it is, and
with another process spinning on one core the whole time (``busy``). A fit
that uses threads where they do not pay is slower with the defaults,
markedly so beside the busy process. Sizes:
``make_moe_regression(n_samples=n, n_features=5, n_experts=3, noise=0.3,
random_state=0)`` fitted by ``MixtureOfExpertsRegressor(n_experts=3,
random_state=0)``, and ``make_moe_classification(n_samples=2000,
n_features=5, random_state=0)`` by ``MixtureOfExpertsClassifier(n_experts=2,
max_iter=20, random_state=0)``.
"""

import json
import os
import subprocess
import sys

_CHILD = """
import json, sys, time, warnings
import numpy as np
from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe.datasets import make_moe_classification, make_moe_regression
warnings.simplefilter("ignore")
X, y = make_moe_regression(n_samples=10_000, n_features=5, n_experts=3, noise=0.3,
                           random_state=0)
Xc, yc = make_moe_classification(n_samples=2000, n_features=5, random_state=0)
fits = {
    "regressor 1e4 x 5, K=3": lambda: MixtureOfExpertsRegressor(
        n_experts=3, random_state=0).fit(X, y),
    "regressor 1e3 x 5, K=3": lambda: MixtureOfExpertsRegressor(
        n_experts=3, random_state=0).fit(X[:1000], y[:1000]),
    "classifier 2e3 x 5, K=2": lambda: MixtureOfExpertsClassifier(
        n_experts=2, max_iter=20, random_state=0).fit(Xc, yc),
}
out = {}
for name, fit in fits.items():
    fit()
    times = []
    for _ in range(9):
        t0 = time.perf_counter()
        fit()
        times.append(time.perf_counter() - t0)
    out[name] = float(np.median(times))
print(json.dumps(out))
"""

_ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}


def measure(one_thread):
    env = dict(os.environ)
    for name in _ONE_THREAD:
        env.pop(name, None)
    if one_thread:
        env.update(_ONE_THREAD)
    run = subprocess.run(
        [sys.executable, "-c", _CHILD],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(run.stdout.strip().splitlines()[-1])


def main():
    rows = {}
    for load in ("idle", "busy"):
        spinner = None
        if load == "busy":
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            default, single = measure(False), measure(True)
        finally:
            if spinner is not None:
                spinner.kill()
        for name in default:
            rows[name, load] = (default[name], single[name])
    print(f"load average: {os.getloadavg()[0]:.2f} (before the busy rows)")
    header = (
        f"{'fit':<26} {'machine':>7} {'default ms':>11} {'1 thread ms':>12} "
        f"{'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    for (name, load), (default, single) in rows.items():
        print(
            f"{name:<26} {load:>7} {1000 * default:>11.1f} {1000 * single:>12.1f} "
            f"{default / single:>6.2f}x"
        )
    print("ratio: default over one thread (above 1: the defaults are slower)")


if __name__ == "__main__":
    main()
