"""The spoken-digit sweep's evaluation and report (`configs/sweeps/speech.py`).

`evaluate_point` (the sweep's after_point hook) reopens a finished point's checkpoint and caches in
its folder (`speech_eval.json`): the confusion matrix on its test set and, for the recurrent
models of the official split, the gradient-flow probe over the frames (mean_b ‖∂ℓ_b/∂h_t‖ at
initialisation and after training, on the first 0.5 s of test clips at least that long, so every
sequence ends at the same frame). `write_report` turns the points' summaries and caches into
docs/speech/results.md and its two figures, and lists the points not run yet.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cnn_rnn.diagnostics.ablation import PointStates
from cnn_rnn.diagnostics.gradient_flow import gradient_flow
from cnn_rnn.models.speech import SpeechModel
from cnn_rnn.sweep import finished_summary
from cnn_rnn.tables import markdown_table
from cnn_rnn.training.loop import to_dict

CACHE = "speech_eval.json"
PROBED = ("rnn", "gru")
PROBE_SECONDS = 0.5
FSDD_CREDIT = ("Free Spoken Digit Dataset v1.0.9 (Zohar Jackson and contributors, CC BY-SA 4.0), "
               "2,500 recordings of five speakers at 8 kHz")


def confusion_matrix(model: Any, variables: Any, batches: Any, num_classes: int) -> np.ndarray:
    """Counts [true, predicted] of `model` over eval `batches` (padding rows, weight 0, skipped)."""
    logits_fn = jax.jit(lambda v, x, m: model.apply(v, x, train=False, mask=m))
    counts = np.zeros((num_classes, num_classes), np.int64)
    for b in batches:
        pred = np.asarray(logits_fn(variables, b["inputs"], b["mask"])).argmax(-1)
        real = b["weights"] > 0
        np.add.at(counts, (b["targets"][real], pred[real]), 1)
    return counts


def probe_frames(model: SpeechModel, params: Any, waves: np.ndarray, targets: np.ndarray,
                 spec: Any) -> list[float]:
    """mean_b ‖∂ℓ_b/∂h_t‖ per frame t of the backbone's (first layer's) states."""
    feats, fmask = model.apply({}, jnp.asarray(waves), method=SpeechModel.featurize)
    batch = {"inputs": feats, "mask": fmask, "targets": jnp.asarray(targets),
             "weights": jnp.ones(len(targets), jnp.float32)}
    flow = gradient_flow(model.make_backbone(parent=None), {"params": params["backbone"]}, batch,
                         spec, key=jax.random.PRNGKey(0), num_probes=1)
    return [float(g) for g in flow.grad_norm[0]]


def evaluate_point(point: Any, workdir: str) -> dict[str, Any]:
    """The point's confusion matrix (and gradient profiles for PROBED models), cached."""
    path = os.path.join(workdir, CACHE)
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    cfg = to_dict(point.config)
    out: dict[str, Any] = {}
    with PointStates(cfg, workdir) as states:
        data, model = states.data, states.model
        trained = states.state(cfg["steps"])
        out["confusion"] = confusion_matrix(model, trained.variables(), data.eval_batches(250),
                                            data.spec.num_outputs).tolist()
        out["classes"] = data.classes
        if point.tags.get("model") in PROBED and point.tags.get("held_out") == "official":
            n = round(PROBE_SECONDS * data.sample_rate)
            long_enough = data.test["mask"][:, n - 1]
            waves = data.test["inputs"][long_enough][:, :n]
            targets = data.test["targets"][long_enough]
            out["probe"] = {"clips": int(len(targets)), "seconds": PROBE_SECONDS,
                            "hop_seconds": model.hop / model.sample_rate}
            for when, state in (("init", states.state(0)), ("trained", trained)):
                out["probe"][when] = probe_frames(model, state.params, waves, targets, data.spec)
    with open(path, "w") as f:
        json.dump(out, f)
    return out


def _load(points: Sequence[Any], workdir: str) -> list[dict[str, Any]]:
    """One row per point: its tags, and its summary and cache if it finished."""
    rows = []
    for p in points:
        pdir = os.path.join(workdir, p.name)
        summary = finished_summary(pdir, int(p.config.steps))
        row: dict[str, Any] = {"name": p.name, **p.tags, "done": summary is not None}
        if summary is not None:
            row.update(params=summary["params"], accuracy=summary["eval"]["accuracy"],
                       seconds=summary.get("train_seconds"))
            cache = os.path.join(pdir, CACHE)
            if os.path.exists(cache):
                with open(cache) as f:
                    row.update(json.load(f))
        rows.append(row)
    return rows


def speaker_table(rows: Sequence[Mapping[str, Any]], models: Sequence[str],
                  speakers: Sequence[str]) -> list[dict[str, Any]]:
    """Per model: official accuracy, each held-out speaker's, their mean and worst, the gap."""
    table = []
    for m in models:
        mine = {r["held_out"]: r for r in rows if r["model"] == m and r["done"]}
        accs = {s: mine[s]["accuracy"] for s in speakers if s in mine}
        official = mine.get("official", {}).get("accuracy")
        mean = float(np.mean(list(accs.values()))) if accs else None
        entry = {"model": m, "official": official, **{s: accs.get(s) for s in speakers},
                 "runs": f"{len(accs)}/{len(speakers)}", "mean": mean,
                 "worst": min(accs.values()) if accs else None,
                 "gap": None if mean is None or official is None else official - mean}
        table.append(entry)
    return table


def speaker_verdict(table: Sequence[Mapping[str, Any]], num_speakers: int) -> str:
    """Whether the CRNN generalises across speakers best, as one sentence.

    Best: its gap (official minus mean held-out accuracy) is the smallest among the models run on
    every held-out speaker; a gap over fewer speakers is not comparable.
    """
    complete = [e for e in table
                if e["runs"] == f"{num_speakers}/{num_speakers}" and e["gap"] is not None]
    if not complete:
        return ("No model has run on every held-out speaker yet, so the mean and worst are over "
                "the speakers run so far (column `runs`) and the CRNN's gap is not compared yet.")
    smallest = min(complete, key=lambda e: e["gap"])
    crnn = next((e for e in complete if e["model"] == "crnn"), None)
    verdict = ("the CRNN's gap is the smallest" if crnn is smallest else
               f"the CRNN's gap is NOT the smallest ({smallest['model']}'s is)" if crnn
               else "the CRNN has not run on every speaker, so no comparison")
    return f"Among models with all {num_speakers} speakers run: {verdict}."


def progress_line(rows: Sequence[Mapping[str, Any]]) -> str:
    """Which points have not run yet, or that all have."""
    missing = [r["name"] for r in rows if not r["done"]]
    if missing:
        return f"Not run yet ({len(missing)} of {len(rows)} points): {', '.join(missing)}."
    return f"All {len(rows)} points have run."


def feature_check(waves: np.ndarray, model: SpeechModel) -> dict[str, float] | None:
    """Max relative error of the JAX log-mel and MFCC (float32) against librosa's (float64).

    Relative to the reference's largest magnitude, on `waves` [N, L]; None without librosa.
    """
    try:
        import librosa
    except ImportError:
        return None
    feats = {"logmel": [], "mfcc": []}
    kw = dict(sr=model.sample_rate, n_fft=model.frame_length, hop_length=model.hop,
              center=False, n_mels=model.n_mels)
    for x in waves.astype(np.float64):
        mel = librosa.feature.melspectrogram(y=x, power=2.0, **kw)
        db = librosa.power_to_db(mel, top_db=model.top_db)
        feats["logmel"].append(db.T)
        feats["mfcc"].append(librosa.feature.mfcc(S=db, n_mfcc=model.n_mfcc).T)
    from cnn_rnn.models import spectral

    x = jnp.asarray(waves, jnp.float32)
    ours = {"logmel": spectral.log_mel(x, model.sample_rate, model.frame_length, model.hop,
                                       model.n_mels, model.top_db),
            "mfcc": spectral.mfcc(x, model.sample_rate, model.frame_length, model.hop,
                                  model.n_mels, model.n_mfcc, model.top_db)}
    return {k: float(np.max(np.abs(np.asarray(ours[k]) - np.stack(ref)))
                     / np.max(np.abs(np.stack(ref)))) for k, ref in feats.items()}


def time_calls(fn: Any, *args: Any, repeats: int = 20) -> float:
    """Median seconds of a compiled call (after one warm-up call)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def feature_cost(point: Any, batch_size: int = 32) -> dict[str, float]:
    """Seconds per batch of the features alone and of the point's whole training step.

    The step is the forward and backward pass through features and model, measured in the same
    process as the features.
    """
    import optax

    from cnn_rnn.data.registry import build_data
    from cnn_rnn.models.registry import build_model

    cfg = to_dict(point.config)
    data = build_data(cfg["data"], seed=0)
    model = build_model(cfg["model"], data.spec)
    b = data.train_batch(0, batch_size)
    x, m, y = (jnp.asarray(b[k]) for k in ("inputs", "mask", "targets"))
    variables = model.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, x,
                           train=False, mask=m)
    feats = jax.jit(lambda x, m: model.apply({}, x, m, method=SpeechModel.featurize))

    def loss(params: Any, rest: dict[str, Any], x: jax.Array, m: jax.Array,
             y: jax.Array) -> jax.Array:
        out, _ = model.apply({"params": params, **rest}, x, train=True, mask=m,
                             rngs={"dropout": jax.random.PRNGKey(2)}, mutable=["batch_stats"])
        return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()

    step = jax.jit(jax.grad(loss))
    rest = {k: v for k, v in variables.items() if k != "params"}
    return {"features": time_calls(feats, x, m),
            "step": time_calls(step, variables["params"], rest, x, m, y), "batch": batch_size}


def _plot_confusion(row: Mapping[str, Any], path: str) -> None:
    import matplotlib.pyplot as plt

    counts = np.asarray(row["confusion"])
    fig, ax = plt.subplots(figsize=(4.6, 4))
    ax.imshow(counts, cmap="Blues")
    for (i, j), v in np.ndenumerate(counts):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                    color="white" if v > counts.max() / 2 else "black")
    ax.set_xticks(range(len(counts)), row["classes"])
    ax.set_yticks(range(len(counts)), row["classes"])
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("spoken digit")
    ax.set_title(f"{row['model']}, FSDD official test set ({row['accuracy']:.1%})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_probe(rows: Sequence[Mapping[str, Any]], path: str) -> None:
    import matplotlib.pyplot as plt

    from cnn_rnn.diagnostics.figures import label

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for r in rows:
        for when, style in (("init", "--"), ("trained", "-")):
            g = np.asarray(r["probe"][when])
            distance = (len(g) - 1 - np.arange(len(g))) * r["probe"]["hop_seconds"] * 1000
            ax.semilogy(distance, g / g[-1], style, label=f"{label(r['model'])} ({when})")
    ax.set_xlabel("frame's distance from the end of the clip (ms)")
    ax.set_ylabel("‖∂ℓ/∂h_t‖ / value at the last frame")
    ax.invert_xaxis()
    ax.legend(fontsize=8)
    ax.set_title("How far back in a word the gradient reaches")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.1f}"


def write_report(points: Sequence[Any], workdir: str, report: str) -> None:
    """Write `report` (markdown) and its figures beside it from the sweep's finished points."""
    rows = _load(points, workdir)
    folder = os.path.dirname(report) or "."
    os.makedirs(folder, exist_ok=True)
    models = list(dict.fromkeys(r["model"] for r in rows))
    speakers = list(dict.fromkeys(r["held_out"] for r in rows if r["held_out"] != "official"))
    official = [r for r in rows if r["held_out"] == "official" and r["done"]]
    steps = int(points[0].config.steps)
    lines = ["# Spoken digits: CNN vs RNN vs CRNN on real recordings", "",
             "Generated by `python -m experiments.sweep --config=configs/sweeps/speech.py "
             f"--workdir=runs/speech`. Data: {FSDD_CREDIT} (every model "
             f"{steps} steps of 32 clips; features in JAX from the waveform: 40 log-mel bands, "
             "32 ms frames every 16 ms, per-utterance normalisation, SpecAugment while training; "
             "configs in `configs/speech.py`). Times are each point's wall-clock training "
             "seconds, compilation and evaluation included, on the machine that ran it (a "
             f"{os.cpu_count()}-core CPU for this report); a point trained beside other work "
             "takes longer.", "",
             "## Official split (indices 0-4 of every digit and speaker: 250 test clips)", ""]
    lines.append(markdown_table(
        [{**r, "acc": _pct(r["accuracy"]), "minutes": f"{r['seconds'] / 60:.1f}"}
         for r in official],
        [("model", "model"), ("params", "params"), ("test accuracy %", "acc"),
         ("train minutes", "minutes")]))
    if official:
        best = max(official, key=lambda r: r["accuracy"])
        fast = [r for r in official if r["seconds"] <= 600]
        ok = any(r["accuracy"] >= 0.97 for r in fast)
        lines += ["", f"Best: {best['model']} at {_pct(best['accuracy'])}% in "
                  f"{best['seconds'] / 60:.1f} min. Target (>= 97% trained in <= 10 min): "
                  f"{'met' if ok else 'NOT met'}."]
        if "confusion" in best:
            _plot_confusion(best, os.path.join(folder, "confusion.png"))
            lines += ["", f"![confusion matrix of {best['model']}](confusion.png)"]
    table = speaker_table(rows, models, speakers)
    lines += ["", "## Speaker-independent: each speaker held out in turn (all 500 of their "
              "clips are the test set; none is trained on)", "",
              markdown_table([{k: (_pct(v) if isinstance(v, float) else v)
                               for k, v in e.items()} for e in table],
                             [("model", "model"), ("official %", "official"),
                              *[(f"{s} %", s) for s in speakers], ("runs", "runs"),
                              ("mean %", "mean"), ("worst %", "worst"),
                              ("gap (official - mean), points", "gap")])]
    lines += ["", speaker_verdict(table, len(speakers)), "", progress_line(rows)]
    probed = [r for r in official if "probe" in r]
    if probed:
        _plot_probe(probed, os.path.join(folder, "gradient_flow.png"))
        lines += ["", "## Gradient flow over the frames: GRU vs tanh-RNN", "",
                  f"mean_b ‖∂ℓ_b/∂h_t‖ of the first recurrent layer on the first "
                  f"{PROBE_SECONDS} s of the {probed[0]['probe']['clips']} official test clips "
                  "at least that long, relative to the last frame (where the classifier reads "
                  "the state).", "", "![gradient flow](gradient_flow.png)", "",
                  "| model | when | gradient at the first frame / last frame |", "|---|---|---|"]
        for r in probed:
            for when in ("init", "trained"):
                g = r["probe"][when]
                lines.append(f"| {r['model']} | {when} | {g[0] / g[-1]:.3g} |")
    first = next((p for p in points if p.tags.get("held_out") == "official"), None)
    if first is not None and official:
        cost = feature_cost(first)
        from cnn_rnn.data.registry import build_data

        cfg = to_dict(first.config)
        data = build_data(cfg["data"], seed=0)
        model = SpeechModel(num_outputs=10, **{k: v for k, v in cfg["model"].items()
                                               if k not in ("name",)})
        check = feature_check(data.test["inputs"][:32, :, 0], model)
        lines += ["", "## Features", "",
                  f"Cost per batch of {cost['batch']} one-second clips, measured in the report's "
                  f"run: log-mel features {1000 * cost['features']:.2f} ms vs the "
                  f"{first.tags['model']}'s whole training step (features, forward, backward) "
                  f"{1000 * cost['step']:.1f} ms ({cost['features'] / cost['step']:.1%})."]
        if check:
            lines.append(f"Against librosa (float64) on 32 official test clips: max relative "
                         f"error (to the largest reference value) log-mel {check['logmel']:.2e}, "
                         f"MFCC {check['mfcc']:.2e}.")
    with open(report, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"report: {report}")
