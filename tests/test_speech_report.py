"""The speech sweep's speaker-independence verdict, on hand-made rows (no recordings needed)."""

import pytest

from cnn_rnn.diagnostics.speech_report import progress_line, speaker_table, speaker_verdict

SPEAKERS = ["anna", "bob"]


def _rows(accuracies: dict[str, dict[str, float | None]]) -> list[dict]:
    """One row per (model, split); an accuracy of None is a point not run yet."""
    return [{"name": f"{split}_{model}", "model": model, "held_out": split,
             "done": acc is not None, "accuracy": acc}
            for model, by_split in accuracies.items() for split, acc in by_split.items()]


def test_the_table_holds_each_model_s_mean_worst_and_gap():
    rows = _rows({"crnn": {"official": 0.99, "anna": 0.95, "bob": 0.93},
                  "gru": {"official": 0.98, "anna": 0.80, "bob": 0.90}})
    crnn, gru = speaker_table(rows, ["crnn", "gru"], SPEAKERS)
    assert crnn["mean"] == pytest.approx(0.94) and crnn["worst"] == 0.93
    assert crnn["gap"] == pytest.approx(0.05) and crnn["runs"] == "2/2"
    assert gru["mean"] == pytest.approx(0.85) and gru["gap"] == pytest.approx(0.13)
    assert speaker_verdict([crnn, gru], 2) == (
        "Among models with all 2 speakers run: the CRNN's gap is the smallest.")


def test_another_model_with_a_smaller_gap_is_named():
    rows = _rows({"crnn": {"official": 0.99, "anna": 0.80, "bob": 0.90},
                  "gru": {"official": 0.95, "anna": 0.94, "bob": 0.92}})
    verdict = speaker_verdict(speaker_table(rows, ["crnn", "gru"], SPEAKERS), 2)
    assert verdict.endswith("the CRNN's gap is NOT the smallest (gru's is).")


def test_a_gap_over_fewer_speakers_is_not_compared():
    rows = _rows({"crnn": {"official": 0.99, "anna": 0.99, "bob": None},
                  "gru": {"official": 0.95, "anna": 0.80, "bob": 0.90}})
    table = speaker_table(rows, ["crnn", "gru"], SPEAKERS)
    assert table[0]["runs"] == "1/2" and table[0]["gap"] == pytest.approx(0.0)
    assert speaker_verdict(table, 2).endswith(
        "the CRNN has not run on every speaker, so no comparison.")
    assert progress_line(rows) == "Not run yet (1 of 6 points): bob_crnn."

    only_official = _rows({"crnn": {"official": 0.99, "anna": None, "bob": None}})
    assert speaker_verdict(speaker_table(only_official, ["crnn"], SPEAKERS), 2).startswith(
        "No model has run on every held-out speaker yet")
    everything = _rows({"crnn": {"official": 0.9, "anna": 0.8}})
    assert progress_line(everything) == "All 2 points have run."
