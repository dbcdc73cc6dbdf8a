"""Pool an activation to one vector per image on its device: feature maps over H, W (mean, max,
mean+max, or flattened), transformer tokens by CLS or mean.
"""

from __future__ import annotations

import torch


def pool_features(x: torch.Tensor, pool: str = "mean", token_pool: str = "cls") -> torch.Tensor:
    """Pool a batch of activations to ``(N, D)`` float32, on the tensor's device.

    4-D maps ``(N, C, H, W)`` are pooled over H, W (``mean``, ``max``, ``meanmax`` = both,
    concatenated); 3-D tokens ``(N, T, D)`` by ``token_pool`` (``cls`` = token 0, ``mean``);
    2-D passes through; ``pool='none'`` flattens anything. The result never aliases ``x``.

    Examples
    --------
    >>> pool_features(torch.ones(2, 8, 4, 4), "meanmax").shape
    torch.Size([2, 16])
    """
    x32 = x.float()
    if pool == "none" or x.ndim > 4:
        out = x32.flatten(1)
    elif x.ndim == 4:
        out = _pool_spatial(x32, pool)
    elif x.ndim == 3:
        out = x32[:, 0] if token_pool == "cls" else x32.mean(dim=1)
    else:
        out = x32.reshape(x.shape[0], -1)
    # a view would change under a later in-place op (ReLU(inplace=True)) or pin the whole map
    if out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
        out = out.clone()
    return out


def _pool_spatial(x: torch.Tensor, pool: str) -> torch.Tensor:
    if pool == "mean":
        return x.mean(dim=(2, 3))
    if pool == "max":
        return x.amax(dim=(2, 3))
    return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)

