"""Benchmark of skmoe's EM fit: wall time, iterations, kernels, flexmix, roofline.

Run from the repository root, on a machine as quiet as can be had (the
numbers below are what the README quotes)::

    # the default grid (about 15 min on 2 quiet cores)
    OMP_NUM_THREADS=1 python benchmarks/bench_em.py
    # n in {1e4, 1e5}, d=5, K=3
    OMP_NUM_THREADS=1 python benchmarks/bench_em.py --quick
    # also n=1e7, where memory allows
    OMP_NUM_THREADS=1 python benchmarks/bench_em.py --big
    # one size, with a cProfile of its fit
    OMP_NUM_THREADS=1 python benchmarks/bench_em.py --n 1e6 --d 20 --K 8 \\
        --profile 1000000,20,8

(``OMP_NUM_THREADS=1`` keeps OpenBLAS's threads from fighting numba's: skmoe
itself holds BLAS to one thread around its kernels, and parallelises rows with
numba.) The default grid is n in {1e4, 1e5, 1e6} x d in {5, 20} x K in {3, 8},
with flexmix at n = 1e4 (3 random starts each) and the NumPy-twin fits up to
n = 1e5.

For every size the data are
``make_moe_regression(n_samples=n, n_features=d, n_experts=K, noise=0.3,
random_state=0)`` and the model
``MixtureOfExpertsRegressor(n_experts=K, random_state=0, tol=1e-6,
max_iter=--max-iter)``. Each size runs in a fresh Python process (so that its
peak RSS is its own), which first makes a tiny fit to load (or compile) the
numba kernels; that warm-up is timed and reported, not counted.
``--no-cold-compile`` skips timing the first fit in a process whose numba
cache directory is empty (every kernel compiled), which is what the first fit
after installing costs.

Tables printed:

1. EM fits: seconds to convergence (wall and CPU; where a fit takes under
   a second, the median of 7 fits, as ``fit_repeats`` says), EM iterations, seconds
   per iteration, the gate's Newton steps / objective evaluations /
   Hessians per M-step, final log-likelihood, the flop model of one
   iteration (``flops_per_iteration``) and the achieved GFLOP/s against the
   machine's dgemm ceiling (the roofline line), peak RSS.
2. Whole fits with the numba kernels against the same fits with their NumPy
   twins (``SKMOE_DISABLE_NUMBA=1``: same solver, same data), side by side.
3. Kernels: one E-step (gate log-softmax + Gaussian log-density +
   responsibilities, on the fitted model's quantities) with the numba kernels
   against their NumPy twins, called directly, and one gate-loss / gate
   objective evaluation likewise.
4. flexmix (R), when ``Rscript`` and the flexmix package are there: the same
   rows through ``benchmarks/flexmix_fit.R``, i.e.
   ``flexmix(y ~ ., k = K, concomitant = FLXPmultinom(~ x1 + ... + xd))``
   (the issue's ``FLXPmultinom(~ .)`` on the inputs; see that script for why
   the dot is written out), several random starts, each timed inside R; the
   time ratio of one start to one skmoe fit (wall and CPU) and skmoe's
   log-likelihood minus the best start's ``logLik``.
5. The issue's targets with the measured figures.

The machine's load average is printed at the start, at each size and at the
end, and kept in the tables: other processes on the machine slow every
timing here; the CPU columns (and CPU ratios) are the steadier measure then.
"""

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

from harness import (
    HERE,
    best_time,
    current_rss_mb,
    flexmix_available,
    fmt_table,
    load_average,
    machine_ceilings,
    machine_info,
    n_label,
    reset_peak_rss,
    rss_mb,
    run_flexmix,
    vm_hwm_mb,
    worker_main,
)
from harness import run_worker as _run_worker

# cost of one exp/log-heavy element of the row-wise kernels, in flops (the
# c of the flop model: a subtraction, a product, an exp or log amortised...)
ROW_FLOPS_PER_ELEMENT = 10

# fits shorter than this are timed SHORT_FIT_REPEATS times (the median is
# reported): one fit of 0.1 s varies by tens of percent here
SHORT_FIT_S = 1.0
SHORT_FIT_REPEATS = 7


# ---------------------------------------------------------------------------
# flop model
# ---------------------------------------------------------------------------


def flops_per_iteration(
    n, d, K, gate_evals, hessian_rows, given_evals=0.0, gate_predicts=1.0
):
    """Estimated floating-point work of one EM iteration.

    E-step: gate logits ``2 n d K`` (``gate_predicts`` times: EM reuses the
    gate's log-probabilities from the M-step's last evaluation), expert
    means ``2 n d K`` (one product), gate log-softmax, Gaussian log-density
    and responsibilities ``3 c n K`` with ``c = ROW_FLOPS_PER_ELEMENT``.
    M-step: the experts' weighted Gram matrices of ``[X, 1, y]``,
    ``2 n (d + 2)^2 K``; per evaluation of the gate's objective
    ``4 n (d + 1) (K - 1)`` (logits and gradient products) plus ``c n K``,
    half the products for an evaluation from given log-probabilities
    (``given_evals``); per row of a Newton Hessian ``2 P^2 + 2 P (d + 1)``,
    ``P = (d + 1) (K - 1)``. The counts are the measured means per M-step.
    """
    c = ROW_FLOPS_PER_ELEMENT
    P = (d + 1) * (K - 1)
    e_step = gate_predicts * 2 * n * d * K + 2 * n * d * K + 3 * c * n * K
    gate = gate_evals * (4 * n * P + c * n * K)
    gate += given_evals * (2 * n * P + c * n * K)
    gate += hessian_rows * (2 * P * P + 2 * P * (d + 1))
    m_step = 2 * n * (d + 2) ** 2 * K + gate
    return e_step + m_step


# ---------------------------------------------------------------------------
# worker: one size in its own process
# ---------------------------------------------------------------------------


def _warm_up():
    from skmoe import MixtureOfExpertsRegressor
    from skmoe.datasets import make_moe_regression

    X, y = make_moe_regression(
        n_samples=300, n_features=3, n_experts=2, noise=0.3, random_state=0
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MixtureOfExpertsRegressor(n_experts=2, random_state=0, max_iter=3).fit(X, y)
    # also the parallel variants of the kernels (taken from 20 000 rows)
    import numpy as np

    from skmoe import _kernels as kern

    rng = np.random.RandomState(0)
    big = 30_000
    logits = rng.standard_normal((big, 2))
    if kern.NUMBA_AVAILABLE:
        kern.log_softmax_numba(logits)
        kern.gaussian_log_prob_numba(
            rng.standard_normal((big, 1)),
            rng.standard_normal((big, 2, 1)),
            np.ones((2, 1)),
        )
        kern.responsibilities_numba(logits, logits)
        kern.gate_loss_numba(logits, np.full((big, 2), 0.5), np.ones(big))
        kern.gate_objective_numba(
            rng.standard_normal((big, 3)),
            np.zeros(3),
            np.ones(3),
            np.zeros((4, 1)),
            np.full((big, 2), 0.5),
            np.ones(big),
        )
        kern.weighted_grams_numba(
            rng.standard_normal((big, 3)),
            np.zeros(3),
            np.ones((big, 1)),
            np.full((big, 2), 0.5),
        )
        kern.em_pass_numba(
            rng.standard_normal((big, 3)),
            rng.standard_normal((big, 1)),
            np.ones(big),
            np.zeros(3),
            np.ones(3),
            np.zeros((4, 1)),
            np.zeros((3, 2)),
            np.zeros(2),
            np.ones((2, 1)),
            np.full((big, 2), 0.5),
            np.zeros(3),
            np.zeros(1),
        )
    return time.perf_counter() - t0


def _kernel_timings(model, X, Y, repeats):
    """Numba kernels against their NumPy twins on the fitted model's data."""
    import numpy as np

    from skmoe import _kernels as kern

    out = {}
    if not kern.NUMBA_AVAILABLE:
        return out
    gate = model.gate_
    with kern.single_threaded_blas():
        logits = X @ gate.coef_ + gate.intercept_
    means = model._likelihood.outputs(model.experts_, X)
    var = model._noise_variance_2d()

    def e_step(log_softmax, gaussian, resp):
        log_gate = log_softmax(logits)
        log_prob = gaussian(Y, means, var)
        return resp(log_gate, log_prob)

    def numba_e():
        return e_step(
            kern.log_softmax_numba,
            kern.gaussian_log_prob_numba,
            kern.responsibilities_numba,
        )

    def numpy_e():
        return e_step(
            kern.log_softmax_numpy,
            kern.gaussian_log_prob_numpy,
            kern.responsibilities_numpy,
        )

    r_a, ll_a = numba_e()
    r_b, ll_b = numpy_e()
    out["estep_max_abs_diff"] = float(
        max(np.max(np.abs(r_a - r_b)), np.max(np.abs(ll_a - ll_b)))
    )
    out["estep_numba_s"] = best_time(numba_e, repeats)
    out["estep_numpy_s"] = best_time(numpy_e, repeats)

    def with_logits(e_fn):
        def run():
            with kern.single_threaded_blas():
                lg = X @ gate.coef_
            lg += gate.intercept_
            return e_fn()

        return run

    out["estep_logits_numba_s"] = best_time(with_logits(numba_e), repeats)
    out["estep_logits_numpy_s"] = best_time(with_logits(numpy_e), repeats)

    resp, _ = numba_e()
    sw = np.ones(X.shape[0])
    full_logits = np.zeros_like(logits)
    full_logits[:, 1:] = logits[:, 1:] - logits[:, :1]
    out["gate_loss_numba_s"] = best_time(
        lambda: kern.gate_loss_numba(full_logits, resp, sw), repeats
    )
    out["gate_loss_numpy_s"] = best_time(
        lambda: kern.gate_loss_numpy(full_logits, resp, sw), repeats
    )
    theta = gate._theta
    mean, scale = gate._mean, gate._scale
    with kern.single_threaded_blas():
        out["gate_objective_numba_s"] = best_time(
            lambda: kern.gate_objective_numba(X, mean, scale, theta, resp, sw),
            repeats,
        )
        out["gate_objective_numpy_s"] = best_time(
            lambda: kern.gate_objective_numpy(X, mean, scale, theta, resp, sw),
            repeats,
        )
    return out


def _profile_summary(prof, n_iter, top):
    stream = io.StringIO()
    stats = pstats.Stats(prof, stream=stream).sort_stats("cumulative")
    stats.print_stats(top)
    text = stream.getvalue()
    # where the time of one EM iteration goes: selected functions
    groups = [
        ("EM M-step (all)", "_numpy.py", "m_step"),
        ("  experts' fit (closed form)", "_experts.py", "fit_experts"),
        ("    X^T W X, all experts", "_stats.py", "weighted_grams"),
        ("  expert means", "_likelihoods.py", "outputs"),
        ("  noise variances", "_likelihoods.py", "m_step_scale"),
        ("  gate M-step (Newton)", "_softmax.py", "fit"),
        ("    gate objective (kernel)", "_kernels.py", "gate_objective_numba"),
        ("    gate Hessian (kernel)", "_kernels.py", "gate_hessian_numba"),
        ("EM E-step (all)", "_numpy.py", "e_step"),
        ("  responsibilities", "_kernels.py", "gaussian_responsibilities_numba"),
        ("start (k-means)", "_start.py", "initial_responsibilities"),
    ]
    rows = []
    for label, file_end, func in groups:
        cum = 0.0
        calls = 0
        for (filename, _, name), (_, nc, _, ct, _) in stats.stats.items():
            if name == func and filename.endswith(file_end):
                cum += ct
                calls += nc
        rows.append((label, calls, cum, cum / max(n_iter, 1)))
    return text, rows


def run_worker(spec, timeout=None, env=None):
    return _run_worker(__file__, spec, timeout=timeout, env=env)


def worker(spec):
    """Fit one size; return a dict of measurements (run in a child process)."""
    if spec.get("task") == "machine":
        return {"info": machine_info(), "ceilings": machine_ceilings()}
    import numpy as np

    from skmoe import MixtureOfExpertsRegressor
    from skmoe import _kernels as kern
    from skmoe.datasets import make_moe_regression

    res = dict(spec)
    res["warmup_s"] = _warm_up()
    n, d, K = spec["n"], spec["d"], spec["K"]
    t0 = time.perf_counter()
    X, y = make_moe_regression(
        n_samples=n, n_features=d, n_experts=K, noise=0.3, random_state=0
    )
    res["data_s"] = time.perf_counter() - t0
    if spec.get("csv"):
        t0 = time.perf_counter()
        header = ",".join([f"x{j + 1}" for j in range(d)] + ["y"])
        np.savetxt(
            spec["csv"],
            np.column_stack([X, y]),
            delimiter=",",
            header=header,
            comments="",
            fmt="%.17g",
        )
        res["csv_s"] = time.perf_counter() - t0

    model = MixtureOfExpertsRegressor(
        n_experts=K, random_state=0, tol=1e-6, max_iter=spec["max_iter"]
    )
    res["rss_before_fit_mb"] = current_rss_mb()
    res["peak_rss_before_fit_mb"] = rss_mb()
    res["peak_reset"] = reset_peak_rss()
    prof = cProfile.Profile() if spec.get("profile") else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c0 = time.process_time()
        t0 = time.perf_counter()
        if prof is not None:
            prof.enable()
        model.fit(X, y)
        if prof is not None:
            prof.disable()
        res["fit_s"] = time.perf_counter() - t0
        res["cpu_s"] = time.process_time() - c0
    # short fits vary by tens of percent from one to the next here: time
    # more of them (uninstrumented, the same model) and keep the median
    fit_times, cpu_times = [res["fit_s"]], [res["cpu_s"]]
    if prof is None and res["fit_s"] < SHORT_FIT_S:
        for _ in range(SHORT_FIT_REPEATS - 1):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                c0 = time.process_time()
                t0 = time.perf_counter()
                MixtureOfExpertsRegressor(**model.get_params()).fit(X, y)
                fit_times.append(time.perf_counter() - t0)
                cpu_times.append(time.process_time() - c0)
        res["fit_s"] = float(np.median(fit_times))
        res["cpu_s"] = float(np.median(cpu_times))
    res["fit_repeats"] = len(fit_times)
    res["peak_rss_mb"] = rss_mb()  # getrusage: whole process lifetime
    res["fit_peak_rss_mb"] = vm_hwm_mb() if res["peak_reset"] else float("nan")
    res["warnings"] = sorted({type(w.message).__name__ for w in caught})
    res["n_iter"] = int(model.n_iter_)
    res["converged"] = bool(model.converged_)
    res["log_likelihood"] = float(model.log_likelihood_)
    res["s_per_iter"] = res["fit_s"] / model.n_iter_
    # the work the fit did, as the in-memory backend counts it: rows of the
    # gate's evaluations in passes over all n rows, per M-step
    counts = model._fit_counts
    m_steps = max(counts.get("m_steps", 0), 1)
    res["counts"] = counts
    res["gate_steps_per_mstep"] = counts.get("gate_steps", 0) / m_steps
    res["gate_evals_per_mstep"] = counts.get("gate_rows", 0) / n / m_steps
    res["given_evals_per_mstep"] = counts.get("gate_given_rows", 0) / n / m_steps
    res["sum_starts_per_mstep"] = counts.get("gate_sum_starts", 0) / m_steps
    res["hessian_rows_per_mstep"] = counts.get("gate_hessian_rows", 0) / m_steps
    res["gate_predicts_per_iter"] = (
        counts.get("gate_predict_rows", 0) / n / max(model.n_iter_, 1)
    )
    res["flops_per_iter"] = flops_per_iteration(
        n,
        d,
        K,
        res["gate_evals_per_mstep"],
        res["hessian_rows_per_mstep"],
        res["given_evals_per_mstep"],
        res["gate_predicts_per_iter"],
    )
    res["gflops"] = res["flops_per_iter"] / res["s_per_iter"] / 1e9
    res["numba"] = bool(kern.NUMBA_AVAILABLE)
    if prof is not None:
        text, rows = _profile_summary(prof, model.n_iter_, spec.get("profile_top", 30))
        res["profile_text"] = text
        res["profile_rows"] = rows
    if spec.get("kernels", True):
        Y = y.reshape(-1, 1)
        res.update(_kernel_timings(model, X, Y, spec.get("kernel_repeats", 3)))
    return res


# ---------------------------------------------------------------------------
# machine and environment
# ---------------------------------------------------------------------------


def cold_compile_seconds():
    """First fit in a fresh process with an empty numba cache (all compiled)."""
    tmp = tempfile.mkdtemp(prefix="skmoe_numba_cache_")
    try:
        env = dict(os.environ, NUMBA_CACHE_DIR=tmp)
        code = (
            f"import time, sys; sys.path.insert(0, {HERE!r}); "
            "t0 = time.perf_counter(); import bench_em; "
            "t1 = time.perf_counter(); w = bench_em._warm_up(); "
            "print('COLD', t1 - t0, w)"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        for line in proc.stdout.splitlines():
            if line.startswith("COLD"):
                _, imp, fit = line.split()
                return float(imp), float(fit)
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------
# flexmix
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# printing
# ---------------------------------------------------------------------------


def print_fit_table(results, slow_s, peak_gflops):
    headers = [
        "n",
        "d",
        "K",
        "load",
        "fit_s",
        "cpu/wall",
        "n_iter",
        "s/iter",
        "gate st/ev/gv/sum/Hrows",
        "log_likelihood",
        "conv",
        "GFLOP/it",
        "GFLOP/s",
        "%peak",
        "data_MB",
        "fitPeak_MB",
        "fitRSS+MB",
        "note",
    ]
    rows = []
    for r in results:
        note = []
        if r["fit_s"] > slow_s:
            note.append(f">{slow_s:.0f}s")
        if not r["converged"]:
            note.append("not converged")
        rows.append(
            [
                n_label(r["n"]),
                r["d"],
                r["K"],
                f"{r.get('load', float('nan')):.1f}",
                f"{r['fit_s']:.2f}",
                f"{r['cpu_s'] / r['fit_s']:.2f}",
                r["n_iter"],
                f"{r['s_per_iter']:.4f}",
                f"{r['gate_steps_per_mstep']:.1f}/{r['gate_evals_per_mstep']:.1f}/"
                f"{r['given_evals_per_mstep']:.1f}/{r['sum_starts_per_mstep']:.1f}/"
                f"{r['hessian_rows_per_mstep']:.0f}",
                f"{r['log_likelihood']:.4f}",
                "yes" if r["converged"] else "no",
                f"{r['flops_per_iter'] / 1e9:.3f}",
                f"{r['gflops']:.2f}",
                f"{100 * r['gflops'] / peak_gflops:.0f}",
                f"{r['n'] * (r['d'] + 1) * 8 / 2**20:.1f}",
                f"{r['fit_peak_rss_mb']:.0f}",
                f"{r['fit_peak_rss_mb'] - r['rss_before_fit_mb']:.0f}",
                ",".join(note),
            ]
        )
    print(fmt_table(headers, rows))


def print_numpy_fit_table(results):
    headers = [
        "n",
        "d",
        "K",
        "numba fit_s",
        "NumPy fit_s",
        "NumPy/numba",
        "numba s/iter",
        "NumPy s/iter",
        "n_iter numba/NumPy",
        "ll numba-NumPy",
    ]
    rows = []
    for r in results:
        q = r.get("numpy_fit")
        if q is None:
            continue
        rows.append(
            [
                n_label(r["n"]),
                r["d"],
                r["K"],
                f"{r['fit_s']:.3f}",
                f"{q['fit_s']:.3f}",
                f"{q['fit_s'] / r['fit_s']:.2f}x",
                f"{r['s_per_iter']:.4f}",
                f"{q['s_per_iter']:.4f}",
                f"{r['n_iter']}/{q['n_iter']}",
                f"{r['log_likelihood'] - q['log_likelihood']:+.2e}",
            ]
        )
    print(fmt_table(headers, rows))


def print_kernel_table(results):
    headers = [
        "n",
        "d",
        "K",
        "E numba_ms",
        "E numpy_ms",
        "E ratio",
        "E+logits ratio",
        "gate_loss ratio",
        "gate_obj numba_ms",
        "gate_obj numpy_ms",
        "gate_obj ratio",
        "max|diff|",
    ]
    rows = []
    for r in results:
        if "estep_numba_s" not in r:
            continue
        rows.append(
            [
                n_label(r["n"]),
                r["d"],
                r["K"],
                f"{r['estep_numba_s'] * 1e3:.2f}",
                f"{r['estep_numpy_s'] * 1e3:.2f}",
                f"{r['estep_numpy_s'] / r['estep_numba_s']:.2f}x",
                f"{r['estep_logits_numpy_s'] / r['estep_logits_numba_s']:.2f}x",
                f"{r['gate_loss_numpy_s'] / r['gate_loss_numba_s']:.2f}x",
                f"{r['gate_objective_numba_s'] * 1e3:.2f}",
                f"{r['gate_objective_numpy_s'] * 1e3:.2f}",
                f"{r['gate_objective_numpy_s'] / r['gate_objective_numba_s']:.2f}x",
                f"{r['estep_max_abs_diff']:.1e}",
            ]
        )
    print(fmt_table(headers, rows))


def print_flexmix_table(pairs):
    headers = [
        "n",
        "d",
        "K",
        "load",
        "skmoe_s",
        "skmoe_cpu_s",
        "skmoe_ll",
        "fx_starts",
        "fx_s/start",
        "fx_cpu_s/start",
        "fx_best_ll",
        "fx_iter",
        "fx_k",
        "fx/skmoe wall",
        "fx/skmoe cpu",
        "ll skmoe-fx",
    ]
    rows = []
    notes = []
    for r, fx in pairs:
        size = [n_label(r["n"]), r["d"], r["K"], f"{fx.get('load', float('nan')):.1f}"]
        skmoe = [
            f"{r['fit_s']:.3f}",
            f"{r['cpu_s']:.3f}",
            f"{r['log_likelihood']:.4f}",
        ]
        if "per_rep_s" not in fx:
            rows.append(size + skmoe + ["-"] * (len(headers) - 7))
            notes.append(f"  n={size[0]} d={size[1]} K={size[2]}: {fx.get('error')}")
            continue
        has = "best_loglik" in fx
        rows.append(
            size
            + skmoe
            + [
                f"{fx['n_ok']}/{len(fx['reps'])}",
                f"{fx['per_rep_s']:.2f}",
                f"{fx['per_rep_cpu_s']:.2f}",
                f"{fx['best_loglik']:.4f}" if has else "-",
                fx.get("best_iter", "-"),
                ",".join(map(str, fx.get("ks", []))) or "-",
                f"{fx['per_rep_s'] / r['fit_s']:.1f}x",
                f"{fx['per_rep_cpu_s'] / r['cpu_s']:.1f}x",
                f"{r['log_likelihood'] - fx['best_loglik']:+.4f}" if has else "-",
            ]
        )
    print(fmt_table(headers, rows))
    for note in notes:
        print(note)
    print(
        "fx_s/start, fx_cpu_s/start: mean wall and CPU (user + sys) seconds of "
        "one flexmix start, timed inside R; fx_iter: EM iterations of the best "
        "start; fx_k: components left in each start (flexmix drops those whose "
        "prior falls below minprior). fx/skmoe: one flexmix start over one "
        "skmoe fit, in wall and in CPU seconds (CPU is the fairer measure on a "
        "shared machine; skmoe's CPU counts both cores). ll skmoe-fx: skmoe's "
        "log-likelihood minus the best flexmix start's logLik() on the same "
        "rows (> 0: skmoe better)."
    )


def print_targets(results, fx_pairs):
    """The speed targets, each with the measured figure (when measured)."""
    by_size = {(r["n"], r["d"], r["K"]): r for r in results}
    lines = []
    pair = [(r, fx) for r, fx in fx_pairs if (r["n"], r["d"], r["K"]) == (10**4, 5, 3)]
    if pair and "best_loglik" in pair[0][1]:
        r, fx = pair[0]
        wall = fx["per_rep_s"] / r["fit_s"]
        cpu = fx["per_rep_cpu_s"] / r["cpu_s"]
        diff = r["log_likelihood"] - fx["best_loglik"]
        ok = wall >= 100 and diff >= -1e-3
        lines.append(
            f"n=1e4 d=5 K=3: flexmix start / skmoe fit {wall:.1f}x wall "
            f"({cpu:.1f}x CPU), target >= 100x; log-likelihood skmoe - flexmix "
            f"{diff:+.4f}, target >= 0 (to 1e-3): {'met' if ok else 'MISSED'}"
        )
    big = by_size.get((10**6, 20, 8))
    if big is not None:
        usage = big["cpu_s"] / big["fit_s"]
        ok = big["s_per_iter"] < 0.15 and big["fit_s"] < 8 and usage > 1.7
        lines.append(
            f"n=1e6 d=20 K=8: {big['s_per_iter']:.3f} s per EM iteration (target "
            f"< 0.15), full fit {big['fit_s']:.1f} s (target < 8), CPU/wall "
            f"{usage:.2f} (target > 1.7): {'met' if ok else 'MISSED'}"
        )
    estep = [r for r in results if r["n"] == 10**6 and "estep_numba_s" in r]
    for r in estep:
        ratio = r["estep_numpy_s"] / r["estep_numba_s"]
        lines.append(
            f"n=1e6 d={r['d']} K={r['K']}: numba E-step {ratio:.1f}x the NumPy "
            f"reference (target >= 3x): {'met' if ratio >= 3 else 'MISSED'}"
        )
    if lines:
        print("\n=== Targets ===")
        for line in lines:
            print(line)


def print_profile(res):
    print(res["profile_text"])
    print(
        f"Per EM iteration ({res['n_iter']} iterations, fit "
        f"{res['fit_s']:.2f} s under the profiler):"
    )
    headers = ["part", "calls", "total_s", "s/iter", "% of fit"]
    rows = [
        [label, calls, f"{cum:.3f}", f"{per:.4f}", f"{100 * cum / res['fit_s']:.1f}"]
        for label, calls, cum, per in res["profile_rows"]
    ]
    top = {label.strip(): cum for label, _, cum, _ in res["profile_rows"]}
    rest = res["fit_s"] - sum(
        top[k]
        for k in (
            "EM M-step (all)",
            "EM E-step (all)",
            "start (k-means)",
        )
    )
    rows.append(
        [
            "rest (EM loop, validation, ...)",
            "",
            f"{rest:.3f}",
            f"{rest / max(res['n_iter'], 1):.4f}",
            f"{100 * rest / res['fit_s']:.1f}",
        ]
    )
    print(fmt_table(headers, rows))


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def _fits_in_memory(n, d, K):
    """Whether a fit of this size likely fits in the available memory.

    A fit holds X, y and about a dozen (n, K) arrays (responsibilities,
    log-densities, expert means, their temporaries): 8 (d + 12 K) bytes a
    row, doubled for safety.
    """
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        available = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):  # pragma: no cover - not Linux
        return n <= 1_000_000
    return 2 * 8 * n * (d + 12 * K) < available


def _parse_size(text):
    n, d, K = (int(float(v)) for v in text.split(","))
    return n, d, K


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="n in {1e4, 1e5}, d=5, K=3 (overrides --n/--d/--K)",
    )
    p.add_argument("--n", type=float, nargs="+", default=[1e4, 1e5, 1e6])
    p.add_argument(
        "--big",
        action="store_true",
        help="also n=1e7, where the machine's available memory allows it",
    )
    p.add_argument("--d", type=int, nargs="+", default=[5, 20])
    p.add_argument("--K", type=int, nargs="+", default=[3, 8])
    p.add_argument(
        "--max-iter", type=int, default=500, help="EM max_iter (default 500)"
    )
    p.add_argument(
        "--kernel-repeats",
        type=int,
        default=3,
        help="best-of repeats for the kernel timings",
    )
    p.add_argument(
        "--no-kernels", action="store_true", help="skip the numba-vs-NumPy kernel table"
    )
    p.add_argument("--no-flexmix", action="store_true")
    p.add_argument(
        "--flexmix-n",
        type=float,
        nargs="+",
        default=[1e4],
        help="sizes for flexmix (default 1e4); larger ones only run when the "
        "smaller timing predicts a start under --flexmix-limit",
    )
    p.add_argument(
        "--flexmix-reps",
        type=int,
        default=3,
        help="flexmix random starts per size (default 3)",
    )
    p.add_argument(
        "--flexmix-limit",
        type=float,
        default=120.0,
        help="seconds one flexmix repetition may be predicted to take",
    )
    p.add_argument("--flexmix-seed", type=int, default=0)
    p.add_argument(
        "--numpy-max-n",
        type=float,
        default=1e5,
        help="also fit sizes up to this n with SKMOE_DISABLE_NUMBA=1 (the NumPy "
        "twins of every kernel, same solver) for the numba/NumPy fit table; "
        "0 skips (default 1e5)",
    )
    p.add_argument(
        "--no-cold-compile",
        action="store_true",
        help="skip timing a first fit with an empty numba cache",
    )
    p.add_argument(
        "--profile",
        type=_parse_size,
        default=None,
        metavar="n,d,K",
        help="also cProfile one fit of this size",
    )
    p.add_argument("--profile-top", type=int, default=30)
    p.add_argument(
        "--slow",
        type=float,
        default=180.0,
        help="flag fits slower than this many seconds",
    )
    p.add_argument("--json", default=None, help="write all results here")
    args = p.parse_args(argv)

    if args.quick:
        sizes = [(10_000, 5, 3), (100_000, 5, 3)]
    else:
        ns = list(args.n)
        if args.big:
            ns.append(1e7)
        sizes = []
        for n in ns:
            for d in args.d:
                for K in args.K:
                    if _fits_in_memory(int(n), d, K):
                        sizes.append((int(n), d, K))
                    else:
                        print(f"skipped n={n:.0e} d={d} K={K}: not enough memory")

    print("skmoe EM benchmark")
    print("command: " + " ".join([os.path.basename(sys.executable), *sys.argv]))
    # in a child process, like every measurement: this process stays small,
    # and a child's ru_maxrss starts from its parent's RSS
    machine = run_worker({"task": "machine"})
    info, ceil = machine["info"], machine["ceilings"]
    for key, value in info.items():
        print(f"  {key}: {value}")
    print(f"  SKMOE_DISABLE_NUMBA={os.environ.get('SKMOE_DISABLE_NUMBA', '0')}")
    print(
        "  ceilings: dgemm {:.1f} GFLOP/s (all BLAS threads), {:.1f} GFLOP/s "
        "(1 thread); copy {:.1f} GB/s".format(
            ceil["dgemm_gflops_all_threads"],
            ceil["dgemm_gflops_1_thread"],
            ceil["copy_gbs"],
        )
    )
    print(f"  load average at start: {load_average()}")
    sys.stdout.flush()

    all_results = {"machine": info, "ceilings": ceil, "fits": [], "flexmix": []}

    if not args.no_cold_compile:
        cold = cold_compile_seconds()
        if cold is None:
            print("\ncold compile: could not be measured")
        else:
            print(
                f"\nFirst fit with an empty numba cache (every kernel compiled): "
                f"import {cold[0]:.2f} s, tiny fit + kernel warm-up {cold[1]:.2f} s"
            )
        all_results["cold_compile"] = cold

    rscript, fx_note = (None, "skipped (--no-flexmix)")
    if not args.no_flexmix:
        rscript, fx_note = flexmix_available()
    fx_sizes = {int(n) for n in args.flexmix_n}
    tmpdir = tempfile.mkdtemp(prefix="skmoe_bench_")
    fx_pairs = []
    fx_per_rep_at = {}
    results = []
    try:
        for n, d, K in sizes:
            want_fx = rscript is not None and n in fx_sizes
            spec = {
                "n": n,
                "d": d,
                "K": K,
                "max_iter": args.max_iter,
                "kernels": not args.no_kernels,
                "kernel_repeats": args.kernel_repeats,
            }
            if want_fx:
                spec["csv"] = os.path.join(tmpdir, f"moe_{n}_{d}_{K}.csv")
            print(
                f"\n[{time.strftime('%H:%M:%S')}] n={n} d={d} K={K} "
                f"(load {load_average()}) ...",
                flush=True,
            )
            load = os.getloadavg()[0]
            r = run_worker(spec)
            r["load"] = load
            results.append(r)
            all_results["fits"].append(r)
            print(
                f"  fit {r['fit_s']:.2f} s (cpu {r['cpu_s']:.2f} s), "
                f"{r['n_iter']} iterations, {r['s_per_iter']:.4f} s/iter, "
                f"log-likelihood {r['log_likelihood']:.4f}, first fit in the "
                f"process (numba cache load + tiny fit) {r['warmup_s']:.2f} s, "
                f"peak RSS during the fit {r['fit_peak_rss_mb']:.0f} MB",
                flush=True,
            )
            if n <= args.numpy_max_n:
                q = run_worker(
                    {**spec, "kernels": False, "csv": None},
                    env=dict(os.environ, SKMOE_DISABLE_NUMBA="1"),
                )
                r["numpy_fit"] = {
                    key: q[key]
                    for key in ("fit_s", "cpu_s", "n_iter", "s_per_iter")
                    + ("log_likelihood", "numba")
                }
                print(
                    f"  NumPy twins (SKMOE_DISABLE_NUMBA=1): fit {q['fit_s']:.2f} s, "
                    f"{q['n_iter']} iterations, log-likelihood "
                    f"{q['log_likelihood']:.4f}",
                    flush=True,
                )
            if want_fx:
                small = [
                    v
                    for (nn, dd, kk), v in fx_per_rep_at.items()
                    if dd == d and kk == K and nn < n
                ]
                if small and max(small) * n / 1e4 > args.flexmix_limit:
                    fx = {
                        "error": (
                            f"skipped: predicted {max(small) * n / 1e4:.0f} s per "
                            f"repetition from n=1e4 (limit {args.flexmix_limit:.0f} s)"
                        )
                    }
                else:
                    timeout = max(600.0, 3 * args.flexmix_limit * args.flexmix_reps)
                    fx_load = os.getloadavg()[0]
                    fx = run_flexmix(
                        rscript,
                        spec["csv"],
                        K,
                        args.flexmix_reps,
                        args.flexmix_seed,
                        timeout,
                    )
                    fx["load"] = fx_load
                if "per_rep_s" in fx:
                    fx_per_rep_at[(n, d, K)] = fx["per_rep_s"] * 1e4 / n
                fx_pairs.append((r, fx))
                all_results["flexmix"].append({"n": n, "d": d, "K": K, **fx})
                if "best_loglik" in fx:
                    print(
                        f"  flexmix: {fx['n_ok']} starts, {fx['total_s']:.2f} s "
                        f"total, best log-likelihood {fx['best_loglik']:.4f}",
                        flush=True,
                    )
                else:
                    print(f"  flexmix: {fx.get('error')}", flush=True)
                os.remove(spec["csv"])

        profile_res = None
        if args.profile is not None:
            n, d, K = args.profile
            print(
                f"\n[{time.strftime('%H:%M:%S')}] profiling n={n} d={d} K={K} "
                f"(load {load_average()}) ...",
                flush=True,
            )
            profile_res = run_worker(
                {
                    "n": n,
                    "d": d,
                    "K": K,
                    "max_iter": args.max_iter,
                    "kernels": False,
                    "profile": True,
                    "profile_top": args.profile_top,
                }
            )
            all_results["profile"] = profile_res
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    print(f"\nload average at end: {load_average()}")
    print(
        "\n=== EM fits: MixtureOfExpertsRegressor(n_experts=K, random_state=0, "
        f"tol=1e-6, max_iter={args.max_iter}) ==="
    )
    print_fit_table(results, args.slow, ceil["dgemm_gflops_all_threads"])
    print(
        f"fit_s: one fit, or the median of {SHORT_FIT_REPEATS} where one takes "
        f"under {SHORT_FIT_S:g} s (the first one instrumented, the others not). "
        "load: the machine's 1-minute load average when the size started (the "
        f"machine has {os.cpu_count()} CPUs). cpu/wall: process CPU seconds per "
        "wall second (up to the number of cores when the fit has them; well "
        "below 1 means other processes took the machine). gate st/ev/gv/sum/Hrows: "
        "per M-step, the gate's Newton steps (or L-BFGS iterations), objective "
        "evaluations (passes over the rows), evaluations from kept "
        "log-probabilities (gradient product only), first gradients from "
        "weighted sums (no pass) and rows summed in Hessians, as the fit "
        "counts them (model._fit_counts). "
        "GFLOP/it: the flop "
        "model of one EM iteration (flops_per_iteration, row-wise element cost "
        f"c = {ROW_FLOPS_PER_ELEMENT}); GFLOP/s: that over the measured s/iter "
        "(the roofline line); %peak: of the dgemm ceiling above (all BLAS "
        "threads). data_MB: X and y. fitPeak_MB: peak RSS of the process during "
        "the fit (VmHWM, reset just before it); fitRSS+MB: that peak minus the "
        "RSS just before the fit."
    )
    if any("numpy_fit" in r for r in results):
        print(
            "\n=== Whole fits: numba kernels vs their NumPy twins "
            "(SKMOE_DISABLE_NUMBA=1, same solver), same data and model ==="
        )
        print_numpy_fit_table(results)
    if not args.no_kernels:
        print(
            "\n=== Kernels: numba vs NumPy twins (skmoe._kernels, called "
            f"directly; best of {args.kernel_repeats}) ==="
        )
        print_kernel_table(results)
        print(
            "E: log_softmax(logits) + gaussian_log_prob + responsibilities on the "
            "fitted model. E+logits: with the shared gate product X @ coef "
            "(BLAS, one thread) added to both. gate_loss: one call on (n, K). "
            "gate_obj: one evaluation of the gate's objective (loss + gradient), "
            "as Newton's line search and L-BFGS make it."
        )
    print("\n=== flexmix ===")
    if not fx_pairs:
        print(f"not run: {fx_note}")
    else:
        print(
            "flexmix(y ~ ., data, k=K, model=FLXMRglm(), "
            "concomitant=FLXPmultinom(~ x1 + ... + xd)); control: flexmix "
            "defaults (iter.max=200, minprior=0.05, tolerance=1e-6 on the "
            f"relative log-likelihood change); {args.flexmix_reps} random starts "
            "(set.seed(seed + rep)), each timed with system.time inside R. "
            "skmoe: one fit (k-means start, n_init=1), its time the median of "
            f"{SHORT_FIT_REPEATS} fits where one takes under {SHORT_FIT_S:g} s."
        )
        versions = fx_pairs[0][1].get("info", "").split()[:2]
        if versions:
            print("  " + " ".join(versions))
        print_flexmix_table(fx_pairs)
        for r, fx in fx_pairs:
            for rep in fx.get("reps", []):
                print(
                    f"  n={n_label(r['n'])} d={r['d']} K={r['K']} rep: "
                    + " ".join(f"{k}={v}" for k, v in rep.items())
                )
    print_targets(results, fx_pairs)
    if profile_res is not None:
        print(
            f"\n=== cProfile of one fit, n={profile_res['n']} d={profile_res['d']} "
            f"K={profile_res['K']} (top {args.profile_top} by cumulative time) ==="
        )
        print_profile(profile_res)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(all_results, f, indent=1, default=str)
        print(f"\nresults written to {args.json}")


if __name__ == "__main__":
    worker_main(worker, main)
