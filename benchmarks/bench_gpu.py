"""Benchmark of EM on the GPU (CuPy, ``device="cuda"``) against the numba CPU path.

Run from the repository root::

    python benchmarks/bench_gpu.py                 # n = 1e6, d = 20, K = 8
    python benchmarks/bench_gpu.py --large         # also n = 1e7
    python benchmarks/bench_gpu.py --cpu-threads 2 --large   # CPU path on 2 threads
    python benchmarks/bench_gpu.py --quick         # n = 1e4: exercises every row

(``OMP_NUM_THREADS`` need not be set: ``--cpu-threads`` sets numba's and BLAS's
threads for the CPU rows; by default all cores.)

For every n the data are ``make_moe_regression(n_samples=n, n_features=d,
n_experts=K, noise=0.3, random_state=0)`` and the model
``MixtureOfExpertsRegressor(n_experts=K, init="random", tol=0,
max_iter=--max-iter, random_state=0)``: with ``tol=0`` every fit runs exactly
``--max-iter`` EM iterations from the same random start, so the times per
iteration compare like with like (the ConvergenceWarning that follows is
silenced). ``--init kmeans`` uses the default start instead (k-means on the
CPU, on a host copy, for every backend).

Rows, each in float64 and float32 input:

- ``numba``: the CPU path (``device="cpu"``). It computes in float64 whatever
  the input dtype, so its float32 row is run only with ``--cpu-float32``.
- ``cupy``: the Array API path on the GPU (``device="cuda"``, NumPy input:
  the data are copied to the GPU inside the fit). Skipped, with the reason,
  without CuPy or a CUDA device.
- ``xp-numpy``: the same Array API code on NumPy (the tests' CPU stand-in for
  the GPU), at ``min(n, --xp-numpy-n)`` rows, so the code path is exercised
  on any machine; not a speed claim.

Columns: ``init s``, the start (starting responsibilities, on the
CPU for every backend); ``H2D s``, one host-to-GPU copy of X measured on its
own (for scale: it is part of the cupy fit); ``fit s``, the whole fit;
``s/iter``, ``(fit - init) / iterations`` (one-off validation and copies
included, spread over the iterations); ``speedup``, numba's float64 s/iter
at the same n over the row's; ``log-lik / n``, the final training
log-likelihood per row (float32 agrees with float64 to about 1e-6 relative).
Each backend and dtype is warmed up first with a small fit (numba compiles,
CuPy builds its kernels); that is not timed.
"""

import argparse
import os
import platform
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from skmoe import MixtureOfExpertsRegressor  # noqa: E402
from skmoe._backends._array_api import fit_array_api  # noqa: E402
from skmoe._backends._namespace import array_api_compat  # noqa: E402
from skmoe.datasets import make_moe_regression  # noqa: E402


def gpu_status():
    """(cupy module or None, a line saying which GPU or why none)."""
    try:
        import cupy
    except ImportError:
        return None, "GPU rows skipped: CuPy is not installed (pip install skmoe[gpu])"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None, "GPU rows skipped: CuPy sees no CUDA device"
        props = cupy.cuda.runtime.getDeviceProperties(0)
    except Exception as exc:  # no driver
        return None, f"GPU rows skipped: {exc!r}"
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    memory = props["totalGlobalMem"] / 2**30
    return cupy, f"GPU: {name}, {memory:.0f} GiB, CuPy {cupy.__version__}"


def make_model(K, args, **extra):
    return MixtureOfExpertsRegressor(
        n_experts=K,
        init=args.init,
        tol=0.0,
        max_iter=args.max_iter,
        random_state=0,
        **extra,
    )


def timed_fit(model, fit):
    """Run ``fit(model)``; return (fit seconds, start seconds, model).

    The start (the starting responsibilities, computed on the CPU) is timed
    by the fit itself (``model._fit_counts["start_s"]``).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        fit(model)
        elapsed = time.perf_counter() - start
    return elapsed, model._fit_counts["start_s"], model


def run_backend(backend, X, y, K, args, cupy):
    if backend == "numba":
        with threadpool_limits(limits=args.cpu_threads, user_api="blas"):
            return timed_fit(make_model(K, args), lambda m: m.fit(X, y))
    if backend == "cupy":
        return timed_fit(make_model(K, args, device="cuda"), lambda m: m.fit(X, y))
    xp = array_api_compat.numpy
    return timed_fit(make_model(K, args), lambda m: fit_array_api(m, X, y, xp=xp))


def host_to_device_seconds(cupy, X):
    cupy.cuda.Device().synchronize()
    start = time.perf_counter()
    X_gpu = cupy.asarray(X)
    cupy.cuda.Device().synchronize()
    elapsed = time.perf_counter() - start
    del X_gpu
    cupy.get_default_memory_pool().free_all_blocks()
    return elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=float, nargs="+", default=[1e6])
    parser.add_argument("--large", action="store_true", help="also n = 1e7")
    parser.add_argument("--quick", action="store_true", help="n = 1e4 only")
    parser.add_argument("--d", type=int, default=20)
    parser.add_argument("--K", type=int, default=8)
    parser.add_argument("--max-iter", type=int, default=20)
    parser.add_argument("--init", choices=["random", "kmeans"], default="random")
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    parser.add_argument("--cpu-threads", type=int, default=os.cpu_count())
    parser.add_argument("--cpu-float32", action="store_true")
    parser.add_argument("--no-cpu", action="store_true", help="skip numba rows")
    parser.add_argument("--xp-numpy-n", type=float, default=1e5)
    args = parser.parse_args(argv)
    sizes = [1e4] if args.quick else sorted(set(args.n + ([1e7] if args.large else [])))
    sizes = [int(n) for n in sizes]

    import numba

    numba.set_num_threads(min(args.cpu_threads, numba.config.NUMBA_NUM_THREADS))
    cupy, gpu_line = gpu_status()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"CPU path on {numba.get_num_threads()} numba / {args.cpu_threads} BLAS "
        f"threads; numpy {np.__version__}, numba {numba.__version__}"
    )
    print(gpu_line)
    print(
        f"d={args.d}, K={args.K}, {args.max_iter} EM iterations per fit "
        f"(tol=0), init={args.init}"
    )

    # warm-ups: numba compiles, CuPy builds its kernels
    Xw, yw = make_moe_regression(
        n_samples=2000, n_features=args.d, n_experts=args.K, random_state=0
    )
    backends = ([] if args.no_cpu else ["numba"]) + ["xp-numpy"]
    if cupy is not None:
        backends.append("cupy")
    for backend in backends:
        for dtype in args.dtypes:
            run_backend(backend, Xw.astype(dtype), yw.astype(dtype), args.K, args, cupy)

    header = (
        f"{'backend':>9} {'dtype':>8} {'n':>9} {'iters':>5} {'init s':>8} "
        f"{'H2D s':>7} {'fit s':>8} {'s/iter':>9} {'speedup':>8} {'log-lik / n':>12}"
    )
    print()
    print(header)
    print("-" * len(header))
    for n in sizes:
        X, y = make_moe_regression(
            n_samples=n, n_features=args.d, n_experts=args.K, noise=0.3, random_state=0
        )
        reference = None
        for backend in backends:
            for dtype in args.dtypes:
                if backend == "numba" and dtype != "float64" and not args.cpu_float32:
                    continue
                rows = min(n, int(args.xp_numpy_n)) if backend == "xp-numpy" else n
                Xb, yb = X[:rows].astype(dtype), y[:rows].astype(dtype)
                h2d = host_to_device_seconds(cupy, Xb) if backend == "cupy" else None
                fit_s, init_s, model = run_backend(backend, Xb, yb, args.K, args, cupy)
                per_iter = (fit_s - init_s) / args.max_iter
                if backend == "numba" and dtype == "float64":
                    reference = per_iter
                speedup = (
                    f"{reference / per_iter:8.1f}"
                    if reference is not None and rows == n
                    else f"{'-':>8}"
                )
                print(
                    f"{backend:>9} {dtype:>8} {rows:>9} {args.max_iter:>5} "
                    f"{init_s:8.2f} {'-' if h2d is None else f'{h2d:.3f}':>7} "
                    f"{fit_s:8.2f} {per_iter:9.4f} {speedup} "
                    f"{model.log_likelihood_ / rows:12.6f}",
                    flush=True,
                )
                del model, Xb, yb
        del X, y
        if cupy is not None:
            cupy.get_default_memory_pool().free_all_blocks()


if __name__ == "__main__":
    main()
