"""The audio source on the real Free Spoken Digit Dataset, where a copy is at hand.

Found through $FSDD_DIR or `shared/data/fsdd/recordings` beside or above the repository
(`configs.speech.fsdd_dir`); skipped, with the reason, elsewhere. Nothing is downloaded.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from cnn_rnn.data.registry import build_data
from configs.speech import FSDD_SPEAKERS, fsdd_dir

FSDD = fsdd_dir()
pytestmark = pytest.mark.skipif(not os.path.isdir(FSDD),
                                reason=f"no FSDD recordings at {FSDD} (set FSDD_DIR)")


def fsdd(**data):
    return build_data({"name": "audio", "path": FSDD, "labels": "names", "sample_rate": 8000,
                       "max_seconds": 1.0, "truncate": True, **data}, seed=0)


def test_official_split_is_fsdd_readme_split():
    src = fsdd(split="official")
    assert len(src.train_clips) == 2250 and len(src.test_clips) == 250
    assert src.classes == [str(d) for d in range(10)]
    assert {c.speaker for c in src.test_clips} == set(FSDD_SPEAKERS)
    assert np.bincount(src.test["targets"]).tolist() == [25] * 10
    lengths = np.concatenate([src.train["mask"].sum(1), src.test["mask"].sum(1)]) / 8000
    assert 0.1 < lengths.min() and np.median(lengths) == pytest.approx(0.4, abs=0.05)
    assert (lengths == 1.0).sum() == 4  # the four recordings longer than 1 s, cut


def test_each_speaker_held_out_has_all_500_clips_and_none_in_training():
    for speaker in FSDD_SPEAKERS[:2]:
        src = fsdd(split="speakers", test_speakers=(speaker,))
        assert len(src.test_clips) == 500 and len(src.train_clips) == 2000
        assert speaker not in {c.speaker for c in src.train_clips}


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_jax_features_of_real_recordings_match_librosa():
    pytest.importorskip("librosa")
    from cnn_rnn.diagnostics.speech_report import feature_check
    from cnn_rnn.models.speech import SpeechModel

    src = fsdd(split="official")
    errors = feature_check(src.test["inputs"][:16, :, 0], SpeechModel(num_outputs=10))
    assert errors["logmel"] < 1e-4 and errors["mfcc"] < 1e-4, errors
