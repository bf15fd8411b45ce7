"""Benchmark of sparse routing in training: top-k and expert choice against dense EM.

Run from the repository root::

    python benchmarks/bench_routing.py    # n=1e5, d=20, K in {8, 32, 128}
    python benchmarks/bench_routing.py --n 20000 --K 8 32 --max-iter 10

For each K the data are ``make_moe_regression(n_samples=n, n_features=d,
n_experts=K, noise=0.3, random_state=0)`` (a K-expert mixture) and the
models ``MixtureOfExpertsRegressor(n_experts=K, routing=..., random_state=0,
max_iter=--max-iter)`` with linear experts: dense (``routing="softmax"``),
``routing="top_k"`` with ``routing_k=2`` and ``routing="expert_choice"``,
fitted one after the other in this process after a small fit has loaded
the numba kernels. The table gives the seconds per EM iteration (the median
time between the loop's records of successive iterations, from the second
on), its ratio to dense EM's, the seconds of the gate's M-steps and of the
E-steps per iteration (cProfile would slow the kernels: timed by wrapping
the backend's methods), the training log-likelihood per row (the routed
model's, for the routed fits), the log-likelihood per row of the dense
mixture at the fitted parameters (``conditional_log_likelihood``, the model
``predict`` uses), and the fewest rows any expert was routed (``routed_rows``
in ``summary()``).
"""

import argparse
import os
import time
import warnings

import numpy as np

import skmoe._backends._numpy as numpy_backend
import skmoe._em._loop as loop
from skmoe import MixtureOfExpertsRegressor
from skmoe.datasets import make_moe_regression


class _Timer:
    """Seconds spent in wrapped functions, by name."""

    def __init__(self):
        self.seconds = {}

    def wrap(self, owner, name):
        real = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + (
                    time.perf_counter() - start
                )

        setattr(owner, name, timed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=20)
    parser.add_argument("--K", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--max-iter", type=int, default=8)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    X, y = make_moe_regression(n_samples=2000, n_experts=3, random_state=0)
    for routing in ("softmax", "top_k", "expert_choice"):
        MixtureOfExpertsRegressor(n_experts=3, routing=routing, max_iter=3).fit(X, y)

    stamps, record = [], loop.record_iteration

    def stamped(*a, **kw):
        stamps.append(time.perf_counter())
        return record(*a, **kw)

    loop.record_iteration = stamped
    timer = _Timer()
    backend = numpy_backend.InMemoryBackend
    for name in ("_m_step_gate", "e_step"):
        timer.wrap(backend, name)

    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"n={args.n}, d={args.d}, {args.max_iter} EM iterations, linear experts")
    header = (
        f"{'K':>4} {'routing':>14} {'s/iter':>7} {'x dense':>7} {'gate s':>7} "
        f"{'E s':>6} {'LL/n':>8} {'dense LL/n':>10} {'min rows':>8}"
    )
    print(header)
    print("-" * len(header))
    for K in args.K:
        X, y = make_moe_regression(
            n_samples=args.n, n_features=args.d, n_experts=K, noise=0.3, random_state=0
        )
        base = None
        for routing in ("softmax", "top_k", "expert_choice"):
            stamps.clear()
            timer.seconds.clear()
            model = MixtureOfExpertsRegressor(
                n_experts=K,
                routing=routing,
                routing_k=2,
                random_state=0,
                max_iter=args.max_iter,
            ).fit(X, y)
            per_iter = float(np.median(np.diff(stamps)[1:]))
            base = per_iter if base is None else base
            n_iter = model.n_iter_
            summary = model.summary()
            rows = summary["routed_rows"].min() if "routed_rows" in summary else args.n
            print(
                f"{K:>4} {routing:>14} {per_iter:>7.3f} {base / per_iter:>7.2f} "
                f"{timer.seconds.get('_m_step_gate', 0.0) / n_iter:>7.3f} "
                f"{timer.seconds.get('e_step', 0.0) / n_iter:>6.3f} "
                f"{model.log_likelihood_ / args.n:>8.4f} "
                f"{model.conditional_log_likelihood(X, y).mean():>10.4f} "
                f"{rows:>8}",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
