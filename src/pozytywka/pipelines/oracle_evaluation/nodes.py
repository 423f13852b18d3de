"""Nodes of oracle_evaluation: the only reader of the synthetic generator's hidden truth.

Each node scores the same test split as its pipeline's evaluation, with the truth as the
scorer: the ceiling a model could reach on this data. ``synthetic_truth`` loads as ``None``
when the truth does not belong to the raw data (a user's own export); every node then returns
empty tables and says why, and the reports leave the oracle out.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp
from lightfm import LightFM
from lightfm.data import Dataset

from pozytywka.recsys.groups import evaluate_groups, protocol_groups
from pozytywka.recsys.metrics import Scorer, rank_each
from pozytywka.recsys.model import EmbeddingScorer, ordered_ids
from pozytywka.synthetic import truth

logger = logging.getLogger(__name__)

NO_TRUTH = "no synthetic truth belongs to the data in data/01_raw"


class TruthMismatchError(ValueError):
    """The truth does not describe some ids of the processed data."""


def oracle_scorer(
    user_truth: pd.DataFrame, track_truth: pd.DataFrame, truth_params: dict, dataset: Dataset
) -> Scorer:
    """The generator's truth as a scorer of 'will this user like this track in the log':
    log P(chosen) + log P(liked | played), up to a per-user constant.

    P(chosen) is taken as exposure x exp(choice_signal * affinity), the limit of the
    generator's pick among ``candidates_per_play`` surfaced tracks; with few candidates the
    true pick is flatter, so this ceiling is close to, not exactly, the Bayes-optimal one.
    """
    user_ids, track_ids = ordered_ids(dataset)
    missing = set(user_ids) - set(user_truth["user_id"]) | set(track_ids) - set(
        track_truth["track_id"]
    )
    if missing:
        raise TruthMismatchError(
            f"the ground truth does not describe {len(missing)} ids of "
            "this data (users registered through the service?)"
        )
    exposure = track_truth.set_index("track_id").loc[track_ids, "exposure_logit"].to_numpy()

    def scores(users: np.ndarray) -> np.ndarray:
        a = truth.affinity_matrix(user_truth, track_truth, truth_params, user_ids[users], track_ids)
        p_like = truth.like_probability_from_affinity(user_truth, truth_params, user_ids[users], a)
        return exposure[None, :] + truth_params["choice_signal"] * a + np.log(p_like)

    return scores


def _absent(reason: str) -> dict:
    logger.info("Oracle left out: %s", reason)
    return {"available": False, "reason": reason}


def evaluate_recommendation_oracle(
    synthetic_truth: dict | None,
    model: LightFM,
    data: dict,
    dataset: Dataset,
    user_features: sp.csr_matrix,
    item_features: sp.csr_matrix,
    group_protocol: dict,
) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Per-user ranking metrics and group playlists of the oracle on the recommendation test
    split (same users, exclusions and groups as the model's evaluation; playlist coherence is
    measured in the model's item embedding space, as for every other scorer)."""
    empty = pd.DataFrame()
    if synthetic_truth is None:
        return empty, _absent(NO_TRUTH), empty
    try:
        scorer = oracle_scorer(
            synthetic_truth["users"], synthetic_truth["tracks"], synthetic_truth["params"], dataset
        )
    except TruthMismatchError as e:
        return empty, _absent(str(e)), empty
    known, test = data["train_known"], data["test"]
    per_user, summary = rank_each({"oracle": scorer}, test, known, data["test_users"])
    item_emb = EmbeddingScorer(model, user_features, item_features).item_emb
    groups = evaluate_groups(
        {"oracle": scorer},
        protocol_groups(known.shape[0], group_protocol),
        item_emb,
        known,
        test,
        group_protocol,
    )
    return per_user, {"available": True, **summary}, groups


def evaluate_skip_oracle(
    synthetic_truth: dict | None, dataset: pd.DataFrame
) -> tuple[pd.DataFrame, dict]:
    """The true skip probability of every test play, and the oracle's prediction: skip when it
    reaches the training skip share (where a calibrated score balances the classes). Rows in
    the order of the test split, as in ``skip_test_predictions``."""
    if synthetic_truth is None:
        return pd.DataFrame(), _absent(NO_TRUTH)
    users, tracks = synthetic_truth["users"], synthetic_truth["tracks"]
    test = dataset[dataset["split"] == "test"]
    unknown = (~test["user_id"].isin(users["user_id"])).sum() + (
        ~test["track_id"].isin(tracks["track_id"])
    ).sum()
    if unknown:
        return pd.DataFrame(), _absent(f"the ground truth does not describe {unknown} test plays")
    prior = float(dataset.loc[dataset["split"] == "train", "skipped"].mean())
    score = truth.skip_probability(
        users, tracks, synthetic_truth["params"], test["user_id"], test["track_id"]
    )
    predictions = pd.DataFrame({"oracle_score": score, "oracle_predicted": score >= prior})
    return predictions, {"available": True, "threshold": prior}
