"""Spoken digits (Free Spoken Digit Dataset): CNN vs RNN vs CRNN on real recordings.

Arguments (`configs/speech.py:model=crnn,split=speakers,speaker=theo`): model (MODELS), path (the
folder of WAVs; default: $FSDD_DIR, else `shared/data/fsdd/recordings` found beside or above the
repository), source ("folder": that folder; "tfds": TensorFlow Datasets' `spoken_digit`, the same
recordings, from `--config.data.data_dir` or tfds' default folder), split ("official": FSDD's index
0-4 test set; "speakers": `speaker` held out), speaker, features (stft, logmel, mfcc), steps, seed.

Every model reads the features of `model.features` computed in JAX from the waveform
(`cnn_rnn/models/speech.py`): the CNN as a one-channel [frames, mel] image, the recurrent models,
the Transformer and the TCN as a masked frame sequence, the CRNN as an image whose rows (frames)
its GRU reads. Sizes train on a 2-core CPU in a few minutes each. Clips are padded to 1 s (4 of
FSDD's 2,500 recordings are longer and are cut: `truncate=True`).
"""

import os

import ml_collections

from configs.common import base_config, parse_arg

MODELS = ("cnn2d", "gru", "lstm", "rnn", "crnn", "transformer", "tcn")
SOURCES = ("folder", "tfds")
FSDD_SPEAKERS = ("george", "jackson", "nicolas", "theo", "yweweler")
SAMPLE_RATE = 8000

BACKBONES = {
    "cnn2d": ("cnn2d", dict(features=(16, 32, 64), kernel_size=3, pool=2, head="mean",
                            hidden=64, dropout=0.1)),
    "gru": ("gru", dict(hidden=128)),
    "lstm": ("lstm", dict(hidden=128)),
    "rnn": ("rnn", dict(hidden=128)),
    "crnn": ("cnn_rnn_hybrid", dict(features=(16, 32), kernel_size=3, pool=2, image_steps="rows",
                                    cell="gru", hidden=96)),
    "transformer": ("transformer", dict(d_model=64, num_heads=4, num_layers=2, mlp_dim=128,
                                        dropout=0.1, positions="sinusoidal", pool="mean")),
    "tcn": ("tcn", dict(levels=5, hidden=64, kernel_size=3, dropout=0.1)),
}


def fsdd_dir() -> str:
    """The FSDD recordings folder: $FSDD_DIR, else shared/data/fsdd/recordings above the repo."""
    if os.environ.get("FSDD_DIR"):
        return os.environ["FSDD_DIR"]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for up in ("..", os.path.join("..", "..")):
        candidate = os.path.normpath(os.path.join(here, up, "shared", "data", "fsdd",
                                                  "recordings"))
        if os.path.isdir(candidate):
            return candidate
    return os.path.normpath(os.path.join(here, "..", "shared", "data", "fsdd", "recordings"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The spoken-digit config: `model` on FSDD, the official split or a held-out speaker."""
    a = parse_arg(arg, dict(model="crnn", path="", source="folder", split="official",
                            speaker="george", features="logmel", steps=2000, seed=0))
    for name, accepted in (("model", MODELS), ("source", SOURCES)):
        if a[name] not in accepted:
            raise ValueError(f"config argument {name}={a[name]!r} unknown; accepted: "
                             f"{', '.join(accepted)}")
    if a["source"] == "tfds" and a["path"]:
        raise ValueError("config argument path is for source=folder; source=tfds reads "
                         "--config.data.data_dir")
    backbone, kwargs = BACKBONES[a["model"]]
    speakers = (a["speaker"],) if a["split"] == "speakers" else ()
    data = dict(split=a["split"], test_speakers=speakers, sample_rate=SAMPLE_RATE,
                max_seconds=1.0, truncate=True)
    if a["source"] == "folder":
        data.update(name="audio", path=a["path"] or fsdd_dir(), labels="names")
    else:
        data.update(name="spoken_digit")
    model = dict(name="speech", backbone=backbone, backbone_kwargs=kwargs,
                 features=a["features"], sample_rate=SAMPLE_RATE, frame_length=256, hop=128,
                 n_mels=40, n_mfcc=13, time_masks=2, time_mask_width=8, freq_masks=2,
                 freq_mask_width=6)
    c = base_config(model=model, data=data, steps=a["steps"], batch_size=32,
                    learning_rate=2e-3, schedule="cosine", warmup_steps=100, grad_clip_norm=1.0,
                    weight_decay=1e-4, seed=a["seed"])
    # One rate for both: the mel filterbank must match the waveform's sample rate.
    c.model.sample_rate = c.data.get_ref("sample_rate")
    return c
