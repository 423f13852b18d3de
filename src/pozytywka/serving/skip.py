"""Single-pair skip prediction for the service: the genre rule and the trained model, from
feature tables and training-period skip counts prepared once at start-up."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier

from pozytywka.skip import (
    TRACK_FEATURES,
    skip_score,
    smoothed_rate,
    training_counts,
    uncalibrated,
)

from .catalogue import Catalogue, UnknownIds
from .fast_trees import CompiledTrees
from .recommender import UNKNOWN_USER_HINT
from .schemas import Prediction

logger = logging.getLogger(__name__)


@dataclass
class SkipAnswer:
    prediction: Prediction
    skip_probability: float
    genre_match: bool
    cold_start: bool  # the user has no training-period plays: rates are the prior
    observed_skip_share: float | None = None  # the rule's: training share of its match group


class SkipEngine:
    """Feature rows exactly as ``score_pairs`` builds them (same columns, same training-period
    rates), without the per-call joins: one row is a few array lookups."""

    def __init__(
        self,
        model,
        skip_dataset: pd.DataFrame,
        tracks: pd.DataFrame,
        catalogue: Catalogue,
        params: dict,
    ):
        self.model, self.catalogue, self.params = model, catalogue, params
        self.columns = list(model.feature_names_in_)
        train = skip_dataset.loc[
            skip_dataset["split"] == "train", ["user_id", "track_id", "skipped", "genre_match"]
        ]
        self.prior = float(train["skipped"].mean())
        by_match = train.groupby("genre_match")["skipped"].mean()
        # The rule's probability: the training skip share of pairs with the same genre match.
        self.rule_probability = {bool(k): float(v) for k, v in by_match.items()}
        users = train.groupby("user_id")["skipped"].agg(["sum", "count"])
        self.user_counts = {
            int(u): (float(s), float(c))
            for u, s, c in zip(users.index, users["sum"], users["count"], strict=True)
        }
        self.track_skips, self.track_rows = training_counts(
            train, "track_id", pd.Series(catalogue.track_ids)
        )
        info = tracks.set_index("track_id").reindex(catalogue.track_ids)
        # The track features the model uses (an unobserved one is not among its inputs).
        self.track_slots = [
            (self.columns.index(name), j)
            for j, name in enumerate(TRACK_FEATURES)
            if name in self.columns
        ]
        self.track_table = info[TRACK_FEATURES].astype("float64").to_numpy()
        csc = catalogue.genre_tracks.tocsc()
        self.track_genres = [
            frozenset(csc.indices[csc.indptr[i] : csc.indptr[i + 1]]) for i in range(csc.shape[1])
        ]
        self.position = {c: i for i, c in enumerate(self.columns)}
        self.fav_columns = {
            c[len("fav_") :]: i for c, i in self.position.items() if c.startswith("fav_")
        }
        # A calibrated model's map from the base model's decision_function (the log-odds the
        # compiled trees sum to) to its probability.
        self.calibrator = (
            model.calibrated_classifiers_[0].calibrators[0]
            if isinstance(model, CalibratedClassifierCV)
            else None
        )
        self.compiled = self._compile(skip_dataset)

    def _compile(self, skip_dataset: pd.DataFrame) -> CompiledTrees | None:
        """The model's trees as arrays, if it is a gradient-boosting classifier (calibrated
        or not) and they reproduce its probabilities on sample rows; otherwise scikit-learn
        predicts."""
        base = uncalibrated(self.model)
        if not isinstance(base, HistGradientBoostingClassifier):
            return None
        try:
            compiled = CompiledTrees(base)
        except ValueError as exc:
            logger.info("Skip model predicts through scikit-learn: %s", exc)
            return None
        sample = skip_dataset[self.columns].head(500)
        expected = skip_score(self.model, sample)
        got = np.array([self._compiled_probability(compiled, x) for x in sample.to_numpy(float)])
        if not np.allclose(got, expected, rtol=0, atol=1e-9):
            logger.warning(
                "Compiled trees disagree with scikit-learn (max %.2e): not used",
                np.abs(got - expected).max(),
            )
            return None
        return compiled

    def _compiled_probability(self, compiled: CompiledTrees, x: np.ndarray) -> float:
        if self.calibrator is None:
            return compiled.skip_probability(x)
        return float(self.calibrator.predict(np.array([compiled.raw_score(x)]))[0])

    @property
    def predictor(self) -> str:
        return "compiled trees" if self.compiled is not None else "scikit-learn"

    def features(self, user_id: int, track_position: int) -> tuple[np.ndarray, bool, bool]:
        """The model's feature row (its column order), genre match, and cold start."""
        profile = self.catalogue.profile(user_id)
        if profile is None:
            raise UnknownIds("user", [user_id], UNKNOWN_USER_HINT)
        m = self.params["rate_smoothing"]
        row = np.zeros(len(self.columns))
        pos = self.position
        for slot, j in self.track_slots:
            row[slot] = self.track_table[track_position, j]
        favourites = {
            self.catalogue.genre_index[g]
            for g in profile.favourite_genres
            if g in self.catalogue.genre_index
        }
        match = bool(favourites & self.track_genres[track_position])
        row[pos["premium_user"]] = float(profile.premium)
        row[pos["genre_match"]] = float(match)
        skips, count = self.user_counts.get(user_id, (0.0, 0.0))
        row[pos["user_skip_rate"]] = smoothed_rate(skips, count, m, self.prior)
        row[pos["user_train_rows"]] = count
        t_skips, t_count = self.track_skips[track_position], self.track_rows[track_position]
        row[pos["track_skip_rate"]] = smoothed_rate(t_skips, t_count, m, self.prior)
        row[pos["track_train_rows"]] = t_count
        for genre in profile.favourite_genres:
            if genre in self.fav_columns:
                row[self.fav_columns[genre]] = 1.0
        return row, match, count == 0

    def predict(self, user_id: int, track_id: str, variant: str) -> SkipAnswer:
        position = int(self.catalogue.track_positions([track_id])[0])
        x, match, cold = self.features(user_id, position)
        if variant == "base":
            # A rule, not a probability model: it claims SKIP (1.0) or PLAY (0.0), so that
            # the answer and its probability never disagree; how often pairs of its genre
            # match were skipped in training is said apart.
            skip = not match
            return SkipAnswer(
                "SKIP" if skip else "PLAY",
                float(skip),
                match,
                cold,
                self.rule_probability.get(match, self.prior),
            )
        if self.compiled is not None:
            probability = self._compiled_probability(self.compiled, x)
        else:
            x_frame = pd.DataFrame(x[None, :], columns=self.columns)
            probability = float(skip_score(self.model, x_frame)[0])
        skip = probability >= self.params["threshold"]
        return SkipAnswer("SKIP" if skip else "PLAY", probability, match, cold)
