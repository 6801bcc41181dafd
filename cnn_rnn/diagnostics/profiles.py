"""Summaries of a gradient profile g_t = ‖∂L/∂h_t‖ (t = 0..T-1): how fast and how far it reaches.

A profile is indexed by absolute step t; the analyses look at it by distance k = T-1-t from the
last step, where the loss of a many-to-one task is read. All functions are pure numpy.

  decay_rate          slope of log10 g against distance (decades per step; negative = vanishing,
                      positive = exploding), a least-squares line through the profile.
  steps_in_the_past   the farthest step back whose gradient is still within `threshold` of its
                      value at the last step (Pascanu et al. 2013's "steps in the past").
"""

from __future__ import annotations

import numpy as np

DEFAULT_THRESHOLD = 1e-3  # three decades below the gradient at the last step
DEFAULT_FLOOR = 1e-30  # ratios below this are float32 underflow noise, not signal


def by_distance(profile: np.ndarray) -> np.ndarray:
    """Return the profile reversed along its last axis: index k is distance T-1-t."""
    return np.asarray(profile)[..., ::-1]


def relative_profile(profile: np.ndarray) -> np.ndarray:
    """Return g_{T-1-k} / g_{T-1} by distance k (nan everywhere if g_{T-1} is 0 or not finite)."""
    g = by_distance(np.asarray(profile, np.float64))
    ref = g[..., :1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = np.isfinite(ref) & (ref > 0)
        return np.where(ok, g / np.where(ok, ref, 1.0), np.nan)


def steps_in_the_past(profile: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> int:
    """Return the farthest distance k back from the last step with g_{T-1-k} >= threshold * g_{T-1}.

    Pascanu et al.'s "steps in the past" the gradient reaches: how far back the loss at the end
    still has a say, at the given relative level. The farthest such step, not the first step that
    falls below: a dilated TCN's profile is exactly zero at some distances inside its receptive
    field (its taps skip them), while a recurrent profile decays smoothly, so for recurrent models
    the two readings agree. Returns T-1 when even step 0 is above, 0 when no earlier step is or
    when g_{T-1} is zero or not finite.

    Args:
      profile: g_t for t = 0..T-1 (one layer).
      threshold: relative level, in (0, 1].

    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    rel = relative_profile(np.asarray(profile).reshape(-1))
    above = np.flatnonzero(np.nan_to_num(rel, nan=0.0) >= threshold)
    return int(above.max()) if above.size else 0


def decay_rate(profile: np.ndarray, floor: float = DEFAULT_FLOOR) -> float:
    """Return the least-squares slope of log10 g against distance, in decades per step.

    The line is fitted to log10(g_{T-1-k} / g_{T-1}) over the distances k where the ratio is
    finite and above `floor`: exact zeros (a TCN's skipped taps, steps beyond its receptive field)
    and float32 underflow (ratios of 1e-30 and below) carry no slope. Negative values mean
    vanishing gradients (-0.1: ten times smaller every 10 steps), positive exploding ones; nan
    when fewer than two points qualify or g_{T-1} is zero.
    """
    rel = relative_profile(np.asarray(profile).reshape(-1))
    k = np.flatnonzero(np.isfinite(rel) & (rel > floor))
    if k.size < 2:
        return float("nan")
    return float(np.polyfit(k.astype(np.float64), np.log10(rel[k]), 1)[0])
