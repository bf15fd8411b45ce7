"""Benchmark of streamed EM at scale: in memory, threads, a local cluster.

Run from the repository root::

    python benchmarks/bench_dask_scale.py                    # both tables
    python benchmarks/bench_dask_scale.py --table memory --n 1000000
    python benchmarks/bench_dask_scale.py --table lazy --lazy-n 1000000 10000000
    python benchmarks/bench_dask_scale.py --table memory --classifier --n 1000000

Every measurement runs in a fresh process (its peak memory its own) and
fits ``MixtureOfExpertsRegressor(n_experts=K, random_state=0,
max_iter=--max-iter)`` after a small fit has loaded the numba kernels. The
seconds per EM iteration are the median time between the loop's records of
successive iterations from the second on (the set-up pass, the start and
the first M-step, whose gate fit is cold, left out); passes are those EM
made after the set-up pass.

Table ``memory`` (d=20, K=8 by default): the in-memory fit on
``make_moe_regression`` data; the same NumPy arrays streamed through
``dask.array.from_array`` on Dask's threaded scheduler; and data drawn
lazily by ``skmoe.datasets.make_moe_regression_dask`` (the same model,
other draws) streamed on the threaded scheduler and on a
``distributed.LocalCluster`` of two single-threaded worker processes (the
arrays in memory would have to be shipped to the workers, so the cluster
gets the lazy data). Lazy data are drawn again at every pass: the ``draw``
column is the time of one pass that only draws them (``(X.sum() +
y.sum()).compute()``), part of each iteration's time.

With ``--classifier`` the memory table fits
``MixtureOfExpertsClassifier(n_experts=K, random_state=0)`` to
``make_moe_classification(n_samples=n, n_features=d, n_experts=K,
n_classes=3)`` (LogisticRegression experts), in memory and streamed from the
same arrays on threads (there is no lazy classification generator).

Table ``lazy`` (d=10, K=8 by default): the lazily drawn data at growing
sizes, with the peak resident memory of the process that fits and of the
cluster's workers, and the seconds per iteration per million rows (flat
where the time grows linearly).
"""

import argparse
import os
import resource
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import run_worker, worker_main  # noqa: E402


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(spec):
    import dask
    import dask.array as da
    import numpy as np

    from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
    from skmoe.datasets import (
        make_moe_classification,
        make_moe_regression,
        make_moe_regression_dask,
    )

    warnings.simplefilter("ignore")
    n, d, K, rows = spec["n"], spec["d"], spec["K"], spec["chunk_rows"]
    if spec.get("classifier"):
        Model = MixtureOfExpertsClassifier

        def make(n, **kw):
            return make_moe_classification(n_samples=n, n_classes=3, **kw)
    else:
        Model = MixtureOfExpertsRegressor

        def make(n, **kw):
            return make_moe_regression(n_samples=n, noise=0.3, **kw)

    X, y = make(2000, n_features=d, n_experts=K)
    Model(n_experts=K, max_iter=3).fit(X, y)
    Model(n_experts=K, max_iter=3).fit(
        da.from_array(X, chunks=(500, -1)), da.from_array(y, chunks=500)
    )
    kind, data = spec["kind"], spec["data"]
    if data == "array":
        X, y = make(n, n_features=d, n_experts=K, random_state=0)
        if kind != "memory":
            X, y = da.from_array(X, chunks=(rows, -1)), da.from_array(y, chunks=rows)
    else:
        X, y = make_moe_regression_dask(
            n, d, K, chunk_rows=rows, noise=0.3, random_state=0
        )
    client = cluster = None
    if kind == "cluster":
        import distributed

        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = distributed.Client(cluster)
        # the workers load the kernels too
        client.run(
            lambda: MixtureOfExpertsRegressor(n_experts=K, max_iter=3).fit(
                *make_moe_regression(n_samples=2000, n_features=d, n_experts=K)
            )
        )
    draw = None
    if data == "lazy":
        start = time.perf_counter()
        dask.compute(X.sum() + y.sum())
        draw = time.perf_counter() - start
    import skmoe._em._loop as loop

    # the times at which the loop records its iterations: the median gap
    # from the second on (the first M-step, the cold gate fit, left out)
    stamps, record = [], loop.record_iteration

    def stamped(*args, **kwargs):
        stamps.append(time.perf_counter())
        return record(*args, **kwargs)

    loop.record_iteration = stamped
    model = Model(n_experts=K, random_state=0, max_iter=spec["max_iter"])
    start = time.perf_counter()
    model.fit(X, y)
    seconds = time.perf_counter() - start
    counts = model._fit_counts
    result = {
        "seconds": seconds,
        "per_iter": float(np.median(np.diff(stamps)[1:])),
        "n_iter": model.n_iter_,
        "passes": counts.get("passes"),
        "log_likelihood": model.log_likelihood_ / n,
        "draw": draw,
        "peak_mb": _peak_mb(),
        "workers_mb": None,
    }
    if client is not None:
        result["workers_mb"] = max(client.run(_peak_mb).values())
        client.close()
        cluster.close()
    return result


def _run(spec):
    try:
        return run_worker(__file__, spec, timeout=3600)
    except RuntimeError as error:
        print(f"  failed: {spec}: {str(error)[-300:]}")
        return None


def _fmt(value, fmt):
    return "" if value is None else format(value, fmt)


def memory_table(args):
    model = "classifier, 3 classes" if args.classifier else "regressor"
    print(f"\n{model}, d={args.d}, K={args.K}, chunks of {args.chunk_rows} rows")
    header = (
        f"{'n':>10} {'fit':>22} {'s/iter':>7} {'x mem':>6} {'iter':>4} "
        f"{'passes':>6} {'draw s':>6} {'LL / n':>9} {'peak MB':>8} {'workers':>8}"
    )
    print(header)
    print("-" * len(header))
    for n in args.n:
        base = None
        for kind, data, label in (
            ("memory", "array", "in memory"),
            ("threads", "array", "threads, arrays"),
            ("threads", "lazy", "threads, lazy"),
            ("cluster", "lazy", "2-worker cluster, lazy"),
        ):
            if args.classifier and data == "lazy":
                continue
            spec = dict(
                classifier=args.classifier,
                kind=kind,
                data=data,
                n=n,
                d=args.d,
                K=args.K,
                chunk_rows=args.chunk_rows,
                max_iter=args.max_iter,
            )
            r = _run(spec)
            if r is None:
                continue
            if base is None:
                base = r["per_iter"]
            print(
                f"{n:>10} {label:>22} {r['per_iter']:>7.2f} "
                f"{r['per_iter'] / base:>6.2f} {r['n_iter']:>4} "
                f"{_fmt(r['passes'], '>6')} {_fmt(r['draw'], '>6.2f')} "
                f"{r['log_likelihood']:>9.4f} {r['peak_mb']:>8.0f} "
                f"{_fmt(r['workers_mb'], '>8.0f')}",
                flush=True,
            )


def lazy_table(args):
    print(
        f"\nlazily drawn data, d={args.lazy_d}, K={args.K}, chunks of "
        f"{args.lazy_chunk_rows} rows"
    )
    header = (
        f"{'n':>11} {'scheduler':>18} {'s/iter':>7} {'per 1e6':>7} {'iter':>4} "
        f"{'passes':>6} {'draw s':>6} {'fit s':>7} {'peak MB':>8} {'workers':>8}"
    )
    print(header)
    print("-" * len(header))
    for n in args.lazy_n:
        for kind, label in (("threads", "threads"), ("cluster", "2-worker cluster")):
            spec = dict(
                kind=kind,
                data="lazy",
                n=n,
                d=args.lazy_d,
                K=args.K,
                chunk_rows=args.lazy_chunk_rows,
                max_iter=args.max_iter,
            )
            r = _run(spec)
            if r is None:
                continue
            print(
                f"{n:>11} {label:>18} {r['per_iter']:>7.2f} "
                f"{r['per_iter'] / (n / 1e6):>7.3f} {r['n_iter']:>4} "
                f"{_fmt(r['passes'], '>6')} {_fmt(r['draw'], '>6.2f')} "
                f"{r['seconds']:>7.1f} {r['peak_mb']:>8.0f} "
                f"{_fmt(r['workers_mb'], '>8.0f')}",
                flush=True,
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", choices=["memory", "lazy", "both"], default="both")
    parser.add_argument("--n", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--d", type=int, default=20)
    parser.add_argument("--K", type=int, default=8)
    parser.add_argument("--chunk-rows", type=int, default=250_000)
    parser.add_argument(
        "--lazy-n", type=int, nargs="+", default=[1_000_000, 10_000_000, 100_000_000]
    )
    parser.add_argument("--lazy-d", type=int, default=10)
    parser.add_argument("--lazy-chunk-rows", type=int, default=500_000)
    parser.add_argument("--max-iter", type=int, default=6)
    parser.add_argument("--classifier", action="store_true")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    if args.table in ("memory", "both"):
        memory_table(args)
    if args.table in ("lazy", "both"):
        lazy_table(args)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    worker_main(worker, main)
