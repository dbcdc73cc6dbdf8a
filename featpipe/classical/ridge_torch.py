"""The ridge probe's paths on a torch tensor's device (:class:`~featpipe.classical.ridge.
RidgeProbeClassifier` fitted on a tensor): every training block is decomposed once by
``torch.linalg.eigh`` in float64 on the device, for k-fold and leave-one-out alike (LAPACK's
tridiagonal solve has no GPU counterpart; the eigenvectors give every alpha with matrix
products). The formulas are those of the NumPy :class:`~featpipe.classical.ridge._RidgePath`'s
"eigen" method; decisions and coefficients come back as NumPy float64 arrays.
"""

from __future__ import annotations

import numpy as np
import torch


class TorchRidgePath:
    """Ridge regressions of the ±1 targets ``Y[train]`` on ``X[train]`` for any alpha.

    Parameters
    ----------
    X : tensor (n_samples, n_features)
        On the device of the computation (float32 is not copied whole: the training rows are).
    Y : ndarray (n_samples, n_targets)
    train : ndarray of int
    fit_intercept : bool
    """

    def __init__(self, X, Y, train, fit_intercept: bool):
        self.X = X
        Y = torch.as_tensor(Y, dtype=torch.float64, device=X.device)
        train = torch.as_tensor(train, device=X.device)
        X_train = X[train].to(torch.float64)
        n, p = X_train.shape
        self.dual = n <= p
        self._mean = X_train.mean(0) if fit_intercept else X_train.new_zeros(p)
        self._ybar = Y[train].mean(0) if fit_intercept else Y.new_zeros(Y.shape[1])
        self.offset = 1.0 / n if fit_intercept else 0.0
        self.Xc = X_train.sub_(self._mean)
        self.Yc = Y[train] - self._ybar
        rhs = self.Yc if self.dual else self.Xc.T @ self.Yc
        w, self.U = torch.linalg.eigh(self.Xc @ self.Xc.T if self.dual else self.Xc.T @ self.Xc)
        # null eigenvalues as exact zeros (see the NumPy path)
        self.w = torch.where(w > len(w) * torch.finfo(w.dtype).eps * w[-1], w, 0.0)
        self.B = self.U.T @ rhs

    @property
    def mean(self) -> np.ndarray:
        return self._mean.cpu().numpy()

    @property
    def ybar(self) -> np.ndarray:
        return self._ybar.cpu().numpy()

    def _centred(self, rows):
        return self.X[torch.as_tensor(rows, device=self.X.device)].to(torch.float64) - self._mean

    def decisions(self, test, alphas):
        """Yield ``(i, slice(None), decision values of X[test] for alphas[i])``."""
        G = self._centred(test)
        GU = (G @ self.Xc.T if self.dual else G) @ self.U
        for i, alpha in enumerate(alphas):
            yield i, slice(None), \
                (GU @ (self.B / (self.w + alpha)[:, None]) + self._ybar).cpu().numpy()

    def loo_decisions(self, alphas):
        """Yield ``(i, rows, leave-one-out decision values of rows for alphas[i])``."""
        alphas_t = torch.as_tensor(np.asarray(alphas), dtype=torch.float64, device=self.X.device)
        winv = 1.0 / (self.w[:, None] + alphas_t[None, :])
        Yc, ybar = self.Yc, self._ybar
        if self.dual:  # 1 - h = alpha Σ_j U_ij² / (w_j + alpha) - offset
            one_minus_h = (self.U**2 @ winv) * alphas_t - self.offset
            for i, alpha in enumerate(alphas):
                residual = alpha * (self.U @ (self.B * winv[:, i : i + 1]))
                decision = Yc + ybar - residual / one_minus_h[:, i : i + 1]
                yield i, slice(None), decision.cpu().numpy()
            return
        Z = self.Xc @ self.U
        one_minus_h = 1.0 - self.offset - Z**2 @ winv
        for i in range(len(alphas)):
            residual = Yc - Z @ (self.B * winv[:, i : i + 1])
            yield i, slice(None), (Yc + ybar - residual / one_minus_h[:, i : i + 1]).cpu().numpy()

    def coef(self, alpha) -> np.ndarray:
        """``(p, K)`` coefficients of the ridge fit with ``alpha``."""
        S = self.U @ (self.B / (self.w + alpha)[:, None])
        return (self.Xc.T @ S if self.dual else S).cpu().numpy()
