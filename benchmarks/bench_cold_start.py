"""Cold-start quality: users scored only from favourite genres and premium flag, as the service
scores a user the model has not seen, against the same users' trained representations and the
popularity ranking, with the project's ranking metrics on the held-out test likes.

    python benchmarks/bench_cold_start.py     # after `kedro run`
"""

from __future__ import annotations

import logging
import pickle
import warnings
from pathlib import Path

import numpy as np

from pozytywka.pipelines.recommendation.nodes import popularity_scorer
from pozytywka.recsys.metrics import evaluate_ranking
from pozytywka.serving.loading import load_service

ROOT = Path(__file__).resolve().parents[1]
SHOWN = ("auc", "precision_at_10", "recall_at_10", "ndcg_at_10")


def main() -> None:
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    state = load_service(ROOT)
    engine, rec = state.recommender, state.recommender.recommender
    with open(ROOT / "data/05_model_input/recommendation_data.pkl", "rb") as f:
        data = pickle.load(f)
    profiles = [state.catalogue.users[int(u)] for u in rec.user_ids]
    cold = np.stack(
        [rec.cold_start_representation(list(p.favourite_genres), p.premium)[1] for p in profiles]
    )

    def cold_start(users: np.ndarray) -> np.ndarray:
        return cold[users] @ engine.item_emb_t + engine.item_bias[None, :]

    scorers = {
        "trained user": rec.scorer,
        "cold start": cold_start,
        "popularity": popularity_scorer(data["train_known"], data["train_liked"]),
    }
    test = data["test"].tocsr()
    print(
        f"{int((np.diff(test.indptr) > 0).sum())} test users with held-out likes "
        "(tracks they played in training left out):"
    )
    print(f"  {'scorer':13s} " + " ".join(f"{m:>15s}" for m in SHOWN))
    for name, scorer in scorers.items():
        metrics = evaluate_ranking(scorer, test, data["train_known"])
        print(f"  {name:13s} " + " ".join(f"{metrics[m]:15.4f}" for m in SHOWN))


if __name__ == "__main__":
    main()
