"""Cold-start quality: users scored only from favourite genres and premium flag, as the service
scores a user the model has not seen, against the same users' trained representations and the
popularity ranking, on the held-out test likes.

    python benchmarks/bench_cold_start.py     # after `kedro run`
"""

from __future__ import annotations

import argparse
import logging
import pickle
import warnings
from pathlib import Path

import numpy as np

from pozytywka.serving.loading import load_service

ROOT = Path(__file__).resolve().parents[1]


def precision_at(scores: np.ndarray, known: np.ndarray, liked: np.ndarray, k: int) -> float:
    scores = scores.copy()
    scores[known] = -np.inf
    top = np.argpartition(-scores, k)[:k]
    return len(np.intersect1d(top, liked)) / k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    state = load_service(ROOT)
    engine, rec = state.recommender, state.recommender.recommender
    with open(ROOT / "data/05_model_input/recommendation_data.pkl", "rb") as f:
        data = pickle.load(f)
    test, known = data["test"].tocsr(), data["train_known"].tocsr()
    popularity = np.asarray(data["train_liked"].sum(axis=0)).ravel().astype(float)
    rows = np.flatnonzero(np.diff(test.indptr) > 0)
    rows = np.random.default_rng(0).choice(rows, min(args.users, len(rows)), replace=False)
    results: dict[str, list[float]] = {"trained user": [], "cold start": [], "popularity": []}
    for r in rows:
        user = rec.user_ids[r]
        liked = test.indices[test.indptr[r]:test.indptr[r + 1]]
        seen = known[r].toarray().ravel() > 0
        profile = state.catalogue.users[int(user)]
        bias, emb = rec.cold_start_representation(list(profile.favourite_genres),
                                                  profile.premium)
        warm = engine.item_emb @ engine.user_emb[r] + engine.item_bias
        cold = engine.item_emb @ emb + engine.item_bias
        for name, scores in [("trained user", warm), ("cold start", cold),
                             ("popularity", popularity)]:
            results[name].append(precision_at(scores, seen, liked, args.k))
    print(f"{len(rows)} test users with held-out likes, precision@{args.k} "
          "(tracks they played in training left out):")
    for name, values in results.items():
        print(f"  {name:13s} {np.mean(values):.4f}")


if __name__ == "__main__":
    main()
