"""What the benchmarks share: child processes, the machine, timing, tables.

Each measurement runs in a fresh Python process (so that its peak RSS and
numba's cache state are its own): a benchmark script calls
:func:`run_worker` with a JSON spec, and :func:`worker_main` in the script's
``__main__`` answers with a ``RESULT`` line. The rest reads the machine
(versions, a dgemm and a copy ceiling, the load average), times functions
and prints tables.
"""

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FLEXMIX_SCRIPT = os.path.join(HERE, "flexmix_fit.R")


def run_worker(script, spec, timeout=None, env=None):
    """``spec`` run by ``script --worker`` in a fresh process; its result dict."""
    cmd = [sys.executable, os.path.abspath(script), "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(
            f"worker failed for {spec}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"no result from worker for {spec}:\n{proc.stdout[-3000:]}")


def worker_main(worker, main):
    """A script's entry point: ``worker(spec)`` in a child, else ``main()``."""
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        result = worker(json.loads(sys.argv[2]))
        print("RESULT " + json.dumps(result, default=str))
    else:
        main()


def best_time(fn, repeats):
    """The shortest of ``repeats`` calls of ``fn``, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def rss_mb():
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss():
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; Linux only."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:  # pragma: no cover - not Linux, or not allowed
        return False


def vm_hwm_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:  # pragma: no cover
        pass
    return float("nan")


def current_rss_mb():
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - not Linux
        return float("nan")


def machine_info():
    """Versions, CPU, numba threads and BLAS of this process."""
    import numba
    import numpy as np
    import scipy
    import sklearn
    from threadpoolctl import threadpool_info

    import skmoe

    info = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "numba": numba.__version__,
        "skmoe": getattr(skmoe, "__version__", "?"),
        "cpus": os.cpu_count(),
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "cpu": platform.processor() or platform.machine(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:  # pragma: no cover
        pass
    np.zeros(1) @ np.zeros(1)
    blas = [
        f"{p.get('internal_api')} {p.get('version')} threads={p.get('num_threads')}"
        for p in threadpool_info()
        if p.get("user_api") == "blas"
    ]
    info["blas"] = "; ".join(blas) or "?"
    return info


def machine_ceilings():
    """Rough ceilings for the roofline column: dgemm GFLOP/s and copy GB/s."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.RandomState(0)
    a = rng.standard_normal((1500, 1500))
    b = rng.standard_normal((1500, 1500))
    flops = 2 * 1500**3
    out = {}
    a @ b
    out["dgemm_gflops_all_threads"] = flops / best_time(lambda: a @ b, 3) / 1e9
    with threadpool_limits(1, user_api="blas"):
        out["dgemm_gflops_1_thread"] = flops / best_time(lambda: a @ b, 3) / 1e9
    big = rng.standard_normal(25_000_000)  # 200 MB
    dst = np.empty_like(big)
    t = best_time(lambda: np.copyto(dst, big), 3)
    out["copy_gbs"] = 2 * big.nbytes / t / 1e9  # read + write
    return out


def load_average():
    """The 1, 5 and 15-minute load averages, as text."""
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:  # pragma: no cover
        return "?"


def flexmix_available():
    """``(Rscript path, None)``, or ``(None, why not)``."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None, "Rscript not found on PATH"
    proc = subprocess.run(
        [rscript, "-e", "cat(requireNamespace('flexmix', quietly=TRUE))"],
        capture_output=True,
        text=True,
    )
    if "TRUE" not in proc.stdout:
        return None, "R package flexmix is not installed"
    return rscript, None


def run_flexmix(rscript, csv, K, nrep, seed, timeout):
    """Fit flexmix (``flexmix_fit.R``) on a CSV file: its starts, timed in R."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [
                rscript,
                FLEXMIX_SCRIPT,
                csv,
                str(K),
                str(nrep),
                str(seed),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    wall = time.perf_counter() - t0
    reps = []
    info = ""
    for line in proc.stdout.splitlines():
        if line.startswith("INFO"):
            info = line[5:]
        if line.startswith("REP"):
            fields = dict(kv.split("=", 1) for kv in line.split()[2:])
            reps.append(fields)
    if not reps:
        return {"error": (proc.stderr or proc.stdout)[-500:]}
    ok = [r for r in reps if "loglik" in r]
    secs = [float(r["seconds"]) for r in reps]
    cpus = [float(r.get("cpu", "nan")) for r in reps]
    out = {
        "info": info,
        "reps": reps,
        "n_ok": len(ok),
        "total_s": sum(secs),
        "per_rep_s": sum(secs) / len(secs),
        "per_rep_cpu_s": sum(cpus) / len(cpus),
        "process_wall_s": wall,
    }
    if ok:
        best = max(ok, key=lambda r: float(r["loglik"]))
        out.update(
            best_loglik=float(best["loglik"]),
            best_iter=int(best["iter"]),
            best_k=int(best["k"]),
            best_seconds=float(best["seconds"]),
            worst_loglik=min(float(r["loglik"]) for r in ok),
            iters=[int(r["iter"]) for r in ok],
            ks=[int(r["k"]) for r in ok],
        )
    return out


def fmt_table(headers, rows):
    widths = [
        max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
        for i, h in enumerate(headers)
    ]
    line = "  ".join(str(h).rjust(w) for h, w in zip(headers, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    body = [
        "  ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows
    ]
    return "\n".join([line, sep, *body])


def n_label(n):
    return f"{n:.0e}".replace("e+0", "e")
