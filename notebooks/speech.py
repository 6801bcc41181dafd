# %% [markdown]
# # Spoken digits: CNN vs GRU vs CRNN on real recordings
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cnn-rnn/cnn_rnn/blob/main/notebooks/speech.ipynb)
#
# Keyword spotting on spoken digits is the classic small speech task, and the classic place for
# the CNN-vs-RNN comparison: a CNN reads the spectrogram as an image, an RNN reads it frame by
# frame, and the CRNN (a convolutional front end feeding a GRU) does both. The recordings are the
# Free Spoken Digit Dataset (five speakers, 8 kHz; CC BY-SA 4.0, Zohar Jackson and contributors),
# read from a folder (`$FSDD_DIR`, or `shared/data/fsdd/recordings` beside the repository). Where
# there is no copy (CI), the notebook says so and uses generated chirps in the same layout, whose
# class is their pitch, so every cell still runs; the numbers are then about chirps, not speech.
#
# The features (STFT, log-mel, MFCC) are computed in JAX from the waveform inside the model
# (`cnn_rnn/models/spectral.py`, `cnn_rnn/models/speech.py`); the full comparison, with every
# speaker held out in turn, is `configs/sweeps/speech.py` (docs/speech/results.md).

# %%
# On Colab, install the package (a minute); anywhere else this cell does nothing: install the
# repository yourself with `pip install -e .` from its root.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "cnn_rnn @ git+https://github.com/cnn-rnn/cnn_rnn"], check=True)

# %%
import logging
import os

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from cnn_rnn.data.registry import build_data
from cnn_rnn.diagnostics.ablation import PointStates
from cnn_rnn.diagnostics.speech_report import confusion_matrix
from cnn_rnn.models import spectral
from cnn_rnn.notebook import notebook_settings
from cnn_rnn.training.loop import to_dict, train_and_evaluate
from configs.speech import fsdd_dir
from configs.speech import get_config as speech_config

logging.getLogger("absl").setLevel(logging.WARNING)
SIZE, WORKDIR = notebook_settings("speech")
STEPS = 150 if SIZE == "small" else 1000
FOLDER = fsdd_dir()
REAL = os.path.isdir(FOLDER)
if not REAL:
    from cnn_rnn.data.chirps import make_tones

    print(f"No FSDD recordings at {FOLDER}: using generated chirps (3 classes) instead.")
    FOLDER = make_tones(os.path.join(WORKDIR, "chirps"), indices=10)
print(f"SIZE: {SIZE}; {STEPS} steps per model; recordings in {FOLDER}; runs in {WORKDIR}")

# %% [markdown]
# ## 1. One recording: waveform, spectrogram, MFCCs

# %%
data = build_data(dict(name="audio", path=FOLDER, labels="names", split="official",
                       sample_rate=8000, max_seconds=1.0, truncate=True), seed=0)
clip = data.test_clips[0]
n = int(data.test["mask"][0].sum())
wave = jnp.asarray(data.test["inputs"][:1, :n, 0])
mag = spectral.stft_magnitude(wave, 256, 128)[0]
mel = spectral.log_mel(wave, 8000, 256, 128, 40)[0]
mfcc = spectral.mfcc(wave, 8000, 256, 128, 40, 13)[0]
fig, axes = plt.subplots(1, 4, figsize=(14, 3))
axes[0].plot(np.arange(n) / 8000, wave[0])
axes[0].set_title(f"{os.path.basename(clip.path)}: waveform")
axes[0].set_xlabel("s")
for ax, img, title in ((axes[1], 20 * jnp.log10(mag + 1e-5), "STFT magnitude (dB)"),
                       (axes[2], mel, "log-mel (40 bands, dB)"), (axes[3], mfcc, "MFCC (13)")):
    ax.imshow(np.asarray(img).T, origin="lower", aspect="auto")
    ax.set_title(title)
    ax.set_xlabel("frame (16 ms)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2. CNN vs GRU vs CRNN, trained briefly on the official split
#
# The same log-mel features feed all three (`configs/speech.py`): the CNN as a one-channel image,
# the GRU as a masked sequence of frames, the CRNN as an image whose rows its GRU reads.

# %%
results, configs = {}, {}
for model in ("cnn2d", "gru", "crnn"):
    configs[model] = speech_config(f"model={model},path={FOLDER},steps={STEPS}")
    configs[model].progress = False
    results[model] = train_and_evaluate(configs[model], os.path.join(WORKDIR, model))
    s = results[model]
    print(f"{model:6s} {s['params']:8,} params: test accuracy {s['eval']['accuracy']:.3f} "
          f"({s['train_seconds']:.0f} s)")

# %% [markdown]
# ## 3. The best model's confusion matrix

# %%
best = max(results, key=lambda m: results[m]["eval"]["accuracy"])
with PointStates(to_dict(configs[best]), os.path.join(WORKDIR, best)) as states:
    trained = states.state(STEPS)
    counts = confusion_matrix(states.model, trained.variables(), states.data.eval_batches(250),
                              states.data.spec.num_outputs)
plt.imshow(counts, cmap="Blues")
plt.xticks(range(len(counts)), data.classes)
plt.yticks(range(len(counts)), data.classes)
plt.xlabel("predicted")
plt.ylabel("spoken")
plt.title(f"{best}: {results[best]['eval']['accuracy']:.1%}")
plt.show()

# %% [markdown]
# ## 4. Check
#
# Every model beats the majority-class baseline after a short run, the best by a wide margin,
# and the confusion matrix counts every test clip once.

# %%
baseline = results[best]["baseline"]["value"]
for model, s in results.items():
    assert s["eval"]["accuracy"] > baseline, (model, s["eval"], baseline)
assert results[best]["eval"]["accuracy"] > baseline + 0.5, (results[best]["eval"], baseline)
assert counts.sum() == len(data.test_clips)
print(f"OK: all three beat the baseline ({baseline:.2f}); best {best}")
