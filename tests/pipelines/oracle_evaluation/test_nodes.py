"""The oracle: the generator's formula as a scorer, and only beside the data it describes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pozytywka.datasets import SyntheticTruthDataset
from pozytywka.pipelines.oracle_evaluation.nodes import (
    TruthMismatchError,
    evaluate_recommendation_oracle,
    evaluate_skip_oracle,
    oracle_scorer,
)
from pozytywka.pipelines.synthetic_data.nodes import package_truth
from pozytywka.synthetic import truth


def test_oracle_scores_are_the_generators_formula(tiny_catalogue, tiny_features):
    (_, _, _, _, user_truth, track_truth, truth_params), _, _ = tiny_catalogue
    _, inputs = tiny_features
    scorer = oracle_scorer(user_truth, track_truth, truth_params, inputs["dataset"])
    user_map, _, item_map, _ = inputs["dataset"].mapping()
    user = next(iter(user_map))
    tracks = list(item_map)[:5]
    a = truth.affinity(user_truth, track_truth, truth_params, [user] * 5, tracks)
    p_like = truth.like_probability(user_truth, track_truth, truth_params, [user] * 5, tracks)
    exposure = track_truth.set_index("track_id").loc[tracks, "exposure_logit"].to_numpy()
    expected = exposure + truth_params["choice_signal"] * a + np.log(p_like)
    got = scorer(np.array([user_map[user]]))[0, [item_map[t] for t in tracks]]
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    with pytest.raises(TruthMismatchError, match="does not describe"):
        oracle_scorer(user_truth.iloc[1:], track_truth, truth_params, inputs["dataset"])


def test_without_truth_every_oracle_output_is_empty_with_a_reason():
    per_user, evaluation, groups = evaluate_recommendation_oracle(None, *[None] * 5, {})
    assert per_user.empty and groups.empty
    assert evaluation["available"] is False and "no synthetic truth" in evaluation["reason"]
    predictions, skip = evaluate_skip_oracle(None, pd.DataFrame())
    assert predictions.empty and skip["available"] is False


def test_truth_loads_only_beside_the_raw_files_it_was_generated_with(tmp_path, tiny_catalogue):
    (_, _, _, _, user_truth, track_truth, truth_params), dirty, _ = tiny_catalogue
    raw = tmp_path / "01_raw"
    raw.mkdir()
    for name, text in zip(["users", "artists", "tracks", "sessions"], dirty[:4], strict=True):
        (raw / f"{name}.jsonl").write_text(text, encoding="utf-8")
    dataset = SyntheticTruthDataset(path=str(raw / "synthetic_truth"), raw_dir=str(raw))
    assert dataset.load() is None  # nothing generated yet
    dataset.save(package_truth(user_truth, track_truth, truth_params, *dirty[:4]))
    loaded = dataset.load()
    pd.testing.assert_frame_equal(loaded["users"], user_truth)
    assert loaded["params"] == truth_params
    # A user's export put in place of the generated one: the truth no longer belongs.
    (raw / "sessions.jsonl").write_text(dirty[3].replace("\n", "\n", 1)[:-200] + "\n")
    assert dataset.load() is None
    assert "sessions.jsonl is not the file" in dataset.mismatch()
