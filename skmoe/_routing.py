"""Sparse routing in training: which experts see which rows.

The gate's probabilities are restricted to each row's routed experts and
renormalised there; the E-step then runs on those log-probabilities
(``-inf`` for the experts a row is not routed to), so a row's
responsibilities are zero outside its experts, and each expert is
evaluated and fitted only on its rows.

* ``"top_k"`` (Shazeer et al. 2017; the Switch Transformer's k = 1): each
  row goes to its ``k`` experts of largest gate weight.
* ``"expert_choice"`` (Zhou et al. 2022): every expert takes rows up to a
  capacity, so that none is starved and none holds more than its capacity:
  each row first gets the expert of its largest gate weight with room, then
  each expert fills its remaining room with the rows of its largest gate
  weight (see :func:`expert_choice_mask`).
"""

import functools
import math
from typing import NamedTuple

import numpy as np

from ._kernels import top_k_routes


class Router(NamedTuple):
    """How rows are routed to experts in training.

    ``kind``: "top_k" or "expert_choice"; ``k``: experts per row (top-k);
    ``capacity_factor``: rows per expert, as a multiple of the rows over the
    experts (expert choice).
    """

    kind: str
    k: int
    capacity_factor: float

    @classmethod
    def of(cls, estimator, n_experts):
        """The estimator's router, or None where every expert sees every row."""
        routing = estimator.routing
        if routing == "softmax":
            return None
        if routing == "top_k" and estimator.routing_k >= n_experts:
            return None  # every expert is in every row's top k: dense EM
        return cls(routing, int(estimator.routing_k), float(estimator.capacity_factor))

    def capacity(self, n_rows, n_experts):
        """Rows an expert may take under expert choice."""
        return math.ceil(self.capacity_factor * n_rows / n_experts)

    @property
    def routes_train_the_gate(self):
        """Whether the gate's M-step can fit the routed gate objective.

        A row of one route has a routed gate of 1 whatever the parameters:
        under top-1 routing and expert choice (many rows of one expert) that
        objective gives the gate no signal, and the gate fits the dense
        responsibilities instead.
        """
        return self.kind == "top_k" and self.k >= 2

    def route(self, log_gate, sample_weight):
        """The routed gate's log-probabilities and the routes.

        Returns ``(routed, routes)``: ``log_gate`` restricted to each row's
        experts and renormalised there (``-inf`` elsewhere), and the
        :class:`Routes`.
        """
        n, K = log_gate.shape
        if self.kind == "top_k":
            # one pass over the rows (the mask, a -inf fill and a
            # log-sum-exp over (n, K) arrays took 0.13 s of a 10^5-row,
            # 32-expert iteration)
            experts, routed = top_k_routes(log_gate, self.k)
            indptr = np.arange(0, n * self.k + 1, self.k)
            return routed, Routes(indptr, experts.ravel(), K)
        positive = sample_weight > 0
        capacity = self.capacity(int(positive.sum()), K)
        mask = expert_choice_mask(log_gate, positive, capacity)
        routed = np.where(mask, log_gate, -np.inf)
        top = routed.max(axis=1, keepdims=True)
        routed -= top + np.log(np.exp(routed - top).sum(axis=1, keepdims=True))
        row, experts = np.nonzero(mask)  # row by row, experts increasing
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(row, minlength=n), out=indptr[1:])
        return routed, Routes(indptr, experts, K)


class Routes:
    """Which experts each row is routed to, by row and by expert.

    ``indptr``, ``experts``: row ``i``'s experts are
    ``experts[indptr[i]:indptr[i + 1]]``, in increasing order (CSR);
    ``rows``: per expert, the indices of its rows, in increasing order
    (made when first read: the routed EM pass needs only the CSR, and the
    sort took 9 ms of a 10^5-row, 32-expert iteration).
    """

    def __init__(self, indptr, experts, n_experts):
        self.indptr = indptr
        self.experts = experts
        self.n_experts = n_experts

    @functools.cached_property
    def rows(self):
        row = _row_of_route(self.indptr)
        order = np.argsort(self.experts, kind="stable")  # rows stay increasing
        ends = np.cumsum(np.bincount(self.experts, minlength=self.n_experts))
        return np.split(row[order], ends[:-1])

    def row_of_route(self):
        """The row of each route."""
        return _row_of_route(self.indptr)

    def covers_every_expert(self, n_experts):
        """Whether every row is routed to every expert (dense EM's routes)."""
        return len(self.experts) == n_experts * (len(self.indptr) - 1)


def _row_of_route(indptr):
    """The row of each route of CSR routes."""
    return np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))


def expert_choice_mask(log_gate, positive, capacity):
    """Expert choice with a capacity: each expert's rows, as a boolean (n, K).

    Two rounds, so that every row has an expert and no expert more than
    ``capacity`` rows (``capacity * K`` at least the rows of positive
    weight). First every row gets one expert: each row proposes to the
    expert of its largest gate weight that has room, each expert accepts the
    proposals of largest gate weight that fit, and the rows turned away
    propose again to their next expert with room. Then each expert fills
    the room it has left with the rows, among those not yet its own, of its
    largest gate weight: the experts' choice, which may give a row several
    experts. Rows of zero weight (which weigh nothing in the fit) go to the
    expert of their largest gate weight, outside the capacities.
    """
    n, K = log_gate.shape
    mask = np.zeros((n, K), dtype=bool)
    loads = np.zeros(K, dtype=np.intp)
    left = np.flatnonzero(positive)
    while left.size:
        room = loads < capacity
        if not room.any():  # pragma: no cover - capacity * K >= rows
            raise RuntimeError("expert choice: no expert has room for a row")
        scores = np.where(room, log_gate[left], -np.inf)
        best = scores.argmax(axis=1)
        placed = np.zeros(left.size, dtype=bool)
        for k in np.unique(best):
            proposals = np.flatnonzero(best == k)
            free = capacity - loads[k]
            if proposals.size > free:
                order = np.argsort(-scores[proposals, k], kind="stable")
                proposals = proposals[order[:free]]
            mask[left[proposals], k] = True
            loads[k] += proposals.size
            placed[proposals] = True
        left = left[~placed]
    for k in np.flatnonzero(loads < capacity):
        others = np.flatnonzero(positive & ~mask[:, k])
        take = min(capacity - loads[k], others.size)
        if take:
            chosen = np.argpartition(-log_gate[others, k], take - 1)[:take]
            mask[others[chosen], k] = True
    idle = np.flatnonzero(~positive)
    mask[idle, log_gate[idle].argmax(axis=1)] = True
    return mask


def routed_counts(rows, sample_weight):
    """Rows of positive weight routed to each expert."""
    return np.array([np.count_nonzero(sample_weight[r] > 0) for r in rows])
