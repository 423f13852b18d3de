"""LightFM training and scoring helpers shared by the recommendation nodes and the service."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from lightfm import LightFM

logger = logging.getLogger(__name__)

# A parameter beyond this has diverged: LightFM starts near 1/no_components and a trained model
# stays within tens. (LightFM itself only refuses non-finite values; 1e12 passes and wrecks
# every embedding-based figure.)
DIVERGED_ABOVE = 1e4


class DivergedError(FloatingPointError):
    """Training blew a model's parameters up; no figure of it means anything."""


def ordered_ids(dataset) -> tuple[np.ndarray, np.ndarray]:
    """User ids and track ids of a ``lightfm.data.Dataset``, in matrix row / column order."""
    user_map, _, item_map, _ = dataset.mapping()
    return (
        np.array(sorted(user_map, key=user_map.get)),
        np.array(sorted(item_map, key=item_map.get)),
    )


def threads(num_threads: int) -> int:
    """A thread count (LightFM's, parallel trials); 0 means every core this process may use."""
    if num_threads > 0:
        return num_threads
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return len(usable) if usable else (os.cpu_count() or 1)


def new_model(hp: dict, seed: int) -> LightFM:
    """An untrained LightFM with ``hp``: ``loss``, ``no_components``, ``learning_rate``,
    ``item_alpha``, ``user_alpha`` and optionally ``max_sampled`` (WARP's and k-OS's most
    negatives drawn per positive; 10) and ``k``, ``n`` (k-OS: the k-th positive of n drawn;
    5, 10): LightFM's own defaults where absent."""
    return LightFM(
        no_components=int(hp["no_components"]),
        loss=hp["loss"],
        learning_rate=float(hp["learning_rate"]),
        item_alpha=float(hp["item_alpha"]),
        user_alpha=float(hp["user_alpha"]),
        max_sampled=int(hp.get("max_sampled", 10)),
        k=min(int(hp.get("k", 5)), int(hp.get("n", 10))),
        n=int(hp.get("n", 10)),
        random_state=seed,
    )


def fit_epochs(
    model: LightFM,
    interactions: sp.coo_matrix,
    weights: sp.coo_matrix | None,
    user_features: sp.csr_matrix,
    item_features: sp.csr_matrix,
    epochs: int,
    num_threads: int,
    on_epoch: Callable[[int, LightFM], None] | None = None,
) -> LightFM:
    """Train epoch by epoch with ``fit_partial`` so a caller can evaluate (and prune) each one.

    k-OS (``loss="warp-kos"``) takes no sample weights (LightFM): it learns from the pairs of
    the largest weight alone (in a weighted variant, the likes).

    Raises DivergedError as soon as a parameter is not finite or leaves
    ``[-DIVERGED_ABOVE, DIVERGED_ABOVE]``.
    """
    if model.loss == "warp-kos" and weights is not None:
        interactions, weights = _heaviest(weights), None
    for epoch in range(1, epochs + 1):
        try:
            model.fit_partial(
                interactions,
                user_features=user_features,
                item_features=item_features,
                sample_weight=weights,
                epochs=1,
                num_threads=threads(num_threads),
            )
        except ValueError as exc:
            if "not all estimated parameters are finite" not in str(exc).lower():
                raise
            largest = float("inf")  # LightFM's own check: a parameter became NaN or infinite
        else:
            largest = _largest_parameter(model)
        if not largest <= DIVERGED_ABOVE:  # NaN fails too
            raise DivergedError(
                f"LightFM diverged at epoch {epoch}: a parameter reached {largest:.3g} "
                f"(learning_rate {model.learning_rate:g}, item_alpha {model.item_alpha:g}, "
                f"user_alpha {model.user_alpha:g})"
            )
        if on_epoch is not None:
            on_epoch(epoch, model)
    return model


class EmbeddingScorer:
    """Scores from LightFM's user and item representations: one matrix product per call."""

    def __init__(self, model: LightFM, user_features: sp.csr_matrix, item_features: sp.csr_matrix):
        self.user_bias, self.user_emb = model.get_user_representations(user_features)
        self.item_bias, self.item_emb = model.get_item_representations(item_features)

    def __call__(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users)
        return (
            self.user_emb[users] @ self.item_emb.T
            + self.item_bias[None, :]
            + self.user_bias[users][:, None]
        )


def _heaviest(weights: sp.coo_matrix) -> sp.coo_matrix:
    """The pairs of the largest weight, as interactions of weight 1."""
    weights = sp.coo_matrix(weights)
    keep = weights.data >= weights.data.max(initial=0.0)
    return sp.coo_matrix(
        (np.ones(int(keep.sum()), np.float32), (weights.row[keep], weights.col[keep])),
        shape=weights.shape,
    )


def _largest_parameter(model: LightFM) -> float:
    return max(
        float(np.abs(a).max(initial=0.0))
        for a in (
            model.user_embeddings,
            model.item_embeddings,
            model.user_biases,
            model.item_biases,
        )
    )
