"""Learning the feature weights: a small L2-regularised logistic regression.

Newton's method on a dozen features converges in a handful of iterations; no
scikit-learn needed. Used offline by ``devconnect recs eval``; the feed only
ever reads the resulting weights.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
NEWTON_ITERATIONS = 50
NEWTON_TOLERANCE = 1e-8


def fit_logistic(x: Array, y: Array, sample_weight: Array, l2: float = 1.0) -> tuple[Array, float]:
    """Weights and intercept maximising the weighted log-likelihood minus ``l2/2 |w|^2``.

    The intercept is not regularised; it shifts every score of a user equally,
    so the ranker drops it.
    """
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    beta = np.zeros(d + 1)
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0
    for _ in range(NEWTON_ITERATIONS):
        z = xb @ beta
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
        grad = xb.T @ (sample_weight * (p - y)) + penalty * beta
        hess = (xb * (sample_weight * p * (1 - p))[:, None]).T @ xb + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if float(np.abs(step).max()) < NEWTON_TOLERANCE:
            break
    return beta[:-1], float(beta[-1])
