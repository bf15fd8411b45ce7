"""The smallest standalone EM at n = 1e4, d = 5, K = 3, against skmoe's fit.

Run from the repository root::

    python benchmarks/standalone_em_1e4.py

The data are ``make_moe_regression(n_samples=10_000, n_features=5,
n_experts=3, noise=0.3, random_state=0)``. Each standalone fit runs the same
18 EM iterations skmoe's default fit takes (closed-form linear experts, one
Newton step of the linear softmax gate with backtracking per iteration)
from a k-means start, and reaches the same log-likelihood: once in NumPy,
once with the whole loop in numba (one thread, the gate's Hessian on every
fifth row as skmoe's is on a 2,000-row subsample). The table gives the
median of nine fits of each. It asks what a fit of this size costs without
a library around it: the 100x-flexmix target needs about 16 ms.
"""

import math
import time
import warnings

import numba
import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.special import logsumexp

from skmoe import MixtureOfExpertsRegressor
from skmoe.datasets import make_moe_regression

warnings.simplefilter("ignore")
X, y = make_moe_regression(
    n_samples=10000, n_features=5, n_experts=3, noise=0.3, random_state=0
)
n, d = X.shape
K = 3


def lloyd(Z, C, it=20):
    for _ in range(it):
        D = (Z * Z).sum(1)[:, None] - 2 * Z @ C.T + (C * C).sum(1)
        lab = D.argmin(1)
        C = np.stack([Z[lab == k].mean(0) for k in range(K)])
    return lab


def standalone(iters=18):
    Z = np.column_stack([X, y])
    Zs = (Z - Z.mean(0)) / Z.std(0)
    C = Zs[np.random.RandomState(0).choice(n, K, replace=False)]
    lab = lloyd(Zs, C)
    R = np.eye(K)[lab]
    X1 = np.column_stack([X, np.ones(n)])
    Xs = np.column_stack([(X - X.mean(0)) / X.std(0), np.ones(n)])
    theta = np.zeros((d + 1, K - 1))
    for _ in range(iters):
        # M-step: experts
        B = np.empty((K, d + 1))
        var = np.empty(K)
        for k in range(K):
            w = R[:, k]
            G = (X1 * w[:, None]).T @ X1
            b = (X1 * w[:, None]).T @ y
            B[k] = np.linalg.solve(G + 1e-10 * np.eye(d + 1), b)
            r = y - X1 @ B[k]
            var[k] = (w @ (r * r)) / w.sum()

        # gate: one Newton step + backtracking
        def obj(t, R=R):
            L = np.column_stack([np.zeros(n), Xs @ t])
            lg = L - logsumexp(L, 1, keepdims=True)
            return -(R * lg).sum(), lg

        f0, lg = obj(theta)
        g = np.exp(lg)
        grad = Xs.T @ (g - R)[:, 1:]
        H = np.zeros(((d + 1) * (K - 1),) * 2)
        for a in range(K - 1):
            for b in range(K - 1):
                wab = g[:, a + 1] * ((a == b) - g[:, b + 1])
                H[a :: K - 1, b :: K - 1] = (Xs * wab[:, None]).T @ Xs
        step = cho_solve(cho_factor(H + 1e-8 * np.eye(len(H))), grad.ravel()).reshape(
            d + 1, K - 1
        )
        s = 1.0
        while s > 1e-4:
            f1, _ = obj(theta - s * step)
            if f1 <= f0 - 1e-4 * s * np.sum(grad * step):
                theta = theta - s * step
                break
            s /= 2
        # E-step
        L = np.column_stack([np.zeros(n), Xs @ theta])
        lg = L - logsumexp(L, 1, keepdims=True)
        M = X1 @ B.T
        lp = -0.5 * (y[:, None] - M) ** 2 / var - 0.5 * np.log(2 * np.pi * var)
        J = lg + lp
        ll = logsumexp(J, 1)
        R = np.exp(J - ll[:, None])
    return ll.sum()


@numba.njit(cache=False, fastmath=True)
def lloyd_numba(Z, C, it):
    n, p = Z.shape
    K = C.shape[0]
    lab = np.zeros(n, np.int64)
    for _ in range(it):
        for i in range(n):
            best = 1e300
            for k in range(K):
                s = 0.0
                for j in range(p):
                    t = Z[i, j] - C[k, j]
                    s += t * t
                if s < best:
                    best = s
                    lab[i] = k
        C[:] = 0
        cnt = np.zeros(K)
        for i in range(n):
            cnt[lab[i]] += 1
            for j in range(p):
                C[lab[i], j] += Z[i, j]
        for k in range(K):
            C[k] /= max(cnt[k], 1.0)
    return lab


@numba.njit(cache=False, fastmath=True)
def gate_logp(Xs, theta, lg):
    n, p = Xs.shape
    K1 = theta.shape[1]
    for i in range(n):
        m = 0.0
        for a in range(K1):
            v = 0.0
            for j in range(p):
                v += Xs[i, j] * theta[j, a]
            lg[i, a + 1] = v
            if v > m:
                m = v
        lg[i, 0] = 0.0
        s = 0.0
        for a in range(K1 + 1):
            s += math.exp(lg[i, a] - m)
        lse = m + math.log(s)
        for a in range(K1 + 1):
            lg[i, a] -= lse


@numba.njit(cache=False, fastmath=True)
def em(X, y, lab, iters):
    n, d = X.shape
    K = 3
    p = d + 1
    K1 = K - 1
    X1 = np.ones((n, p))
    X1[:, :d] = X
    mu = X.sum(0) / n
    sd = np.sqrt(((X - mu) ** 2).sum(0) / n)
    Xs = np.ones((n, p))
    Xs[:, :d] = (X - mu) / sd
    R = np.zeros((n, K))
    for i in range(n):
        R[i, lab[i]] = 1.0
    theta = np.zeros((p, K1))
    lg = np.empty((n, K))
    lg2 = np.empty((n, K))
    B = np.empty((K, p))
    var = np.empty(K)
    ll_total = 0.0
    for _ in range(iters):
        for k in range(K):
            G = np.zeros((p + 1, p + 1))
            for i in range(n):
                w = R[i, k]
                for a in range(p):
                    wa = w * X1[i, a]
                    for b in range(p):
                        G[a, b] += wa * X1[i, b]
                    G[a, p] += wa * y[i]
                G[p, p] += w * y[i] * y[i]
            A = G[:p, :p] + 1e-10 * np.eye(p)
            B[k] = np.linalg.solve(A, G[:p, p].copy())
            wsum = G[p - 1, p - 1]
            rss = G[p, p] - 2 * B[k] @ G[:p, p] + B[k] @ (G[:p, :p] @ B[k])
            var[k] = rss / wsum
        gate_logp(Xs, theta, lg)
        f0 = 0.0
        for i in range(n):
            for a in range(K):
                f0 -= R[i, a] * lg[i, a]
        P = p * K1
        grad = np.zeros(P)
        H = np.zeros((P, P))
        for i in range(n):
            for a in range(K1):
                ga = math.exp(lg[i, a + 1])
                r = ga - R[i, a + 1]
                for j in range(p):
                    grad[a * p + j] += r * Xs[i, j]
                if i % 5:
                    continue
                for b in range(K1):
                    gb = math.exp(lg[i, b + 1])
                    wab = 5.0 * ga * ((1.0 if a == b else 0.0) - gb)
                    for j in range(p):
                        for c in range(p):
                            H[a * p + j, b * p + c] += wab * Xs[i, j] * Xs[i, c]
        step = np.linalg.solve(H + 1e-8 * np.eye(P), grad)
        slope = grad @ step
        s = 1.0
        while s > 1e-4:
            trial = theta.copy()
            for a in range(K1):
                for j in range(p):
                    trial[j, a] -= s * step[a * p + j]
            gate_logp(Xs, trial, lg2)
            f1 = 0.0
            for i in range(n):
                for a in range(K):
                    f1 -= R[i, a] * lg2[i, a]
            if f1 <= f0 - 1e-4 * s * slope:
                theta = trial
                lg, lg2 = lg2, lg
                break
            s /= 2
        ll_total = 0.0
        for i in range(n):
            J = np.empty(K)
            m = -1e300
            for k in range(K):
                mean = 0.0
                for j in range(p):
                    mean += X1[i, j] * B[k, j]
                r = y[i] - mean
                J[k] = (
                    lg[i, k]
                    - 0.5 * r * r / var[k]
                    - 0.5 * math.log(2 * math.pi * var[k])
                )
                if J[k] > m:
                    m = J[k]
            s2 = 0.0
            for k in range(K):
                s2 += math.exp(J[k] - m)
            ll = m + math.log(s2)
            ll_total += ll
            for k in range(K):
                R[i, k] = math.exp(J[k] - ll)
    return ll_total


def standalone_numba(iters=18):
    Z = np.column_stack([X, y])
    Zs = (Z - Z.mean(0)) / Z.std(0)
    C = Zs[np.random.RandomState(0).choice(n, K, replace=False)].copy()
    return em(X, y, lloyd_numba(Zs, C, 20), iters)


def median_ms(fit, repeats=9):
    fit()
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fit()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times)), value


def main():
    model = MixtureOfExpertsRegressor(n_experts=3, random_state=0)
    rows = [
        ("NumPy, 18 iterations", lambda: standalone()),
        ("numba, the whole loop", standalone_numba),
        ("skmoe fit (default)", lambda: model.fit(X, y).log_likelihood_),
    ]
    print(f"{'fit':28s} {'ms':>8s} {'log-likelihood':>16s}")
    for name, fit in rows:
        ms, ll = median_ms(fit)
        print(f"{name:28s} {ms:8.1f} {ll:16.2f}")


if __name__ == "__main__":
    main()
