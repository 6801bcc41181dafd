"""A benchmark suite: the grid of cases a config describes, measured group by group.

Config fields (see configs/benchmarks/*.py):
  models       list of {label, name, impls, options}: a registered model, the implementations
               to run it with (cases.IMPLS; "flax"/"torch" exist for lstm, gru, rnn, "engine"
               for lru, mingru) and our model's keyword arguments (for "engine": `impl`).
  seq_lens, batches, hiddens   the grid (every combination is run).
  input_dim, num_classes, learning_rate, seed   the problem and the optimizer.
  warmup, repeats, min_repeats, budget_s   the timing protocol (see timing.interleaved_times);
               budget_s is per row and group: a group of n rows stops after n * budget_s seconds.
  baseline     the row each row is compared with (ratio_vs_baseline and friends), "" for none:
               "impl:flax" (same model and shape, that implementation), "label:lstm" (same
               shape, that model entry), "seq_len:10" / "batch:64" (same model entry, that
               length / batch), "option:remat=none" (same model and shape, that option value).

Rows of one group (same seq_len, batch, hidden) are timed interleaved, so that their ratios are
measured in the same conditions.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cnn_rnn.benchmarking import cases, timing
from cnn_rnn.config_checks import check_int, check_int_tuple, check_number
from cnn_rnn.errors import ConfigError

log = logging.getLogger(__name__)

Row = dict[str, Any]
BASELINE_FIELDS = ("impl", "label", "seq_len", "batch", "option")
# What must agree between a row and its baseline, by the baseline's field.
_MATCH = {"impl": ("model", "seq_len", "batch", "hidden"),
          "label": ("impl", "seq_len", "batch", "hidden"),
          "seq_len": ("label", "impl", "batch", "hidden"),
          "batch": ("label", "impl", "seq_len", "hidden"),
          "option": ("model", "impl", "seq_len", "batch", "hidden")}


def parse_baseline(spec: str) -> tuple[str, str] | None:
    """Split a baseline spec "field:value" (see the module docstring); None for ""."""
    if not spec:
        return None
    field, sep, value = spec.partition(":")
    if not sep or field not in BASELINE_FIELDS or not value or (field == "option"
                                                                 and "=" not in value):
        raise ConfigError("baseline", f"expected 'field:value' with field one of "
                          f"{', '.join(BASELINE_FIELDS)} (e.g. 'impl:flax', "
                          f"'option:remat=none'), got {spec!r}")
    return field, value


def _is_baseline(row: Row, field: str, value: str) -> bool:
    if field == "option":
        name, _, wanted = value.partition("=")
        return name in row["options"] and str(row["options"][name]) == wanted
    return str(row[field]) == value


def build_cases(config: Mapping[str, Any]) -> list[cases.Case]:
    """Validate the config and return every case of its grid (ConfigError on a bad value)."""
    for field in ("repeats", "min_repeats", "input_dim", "num_classes"):
        check_int(field, config[field], 1)
    check_int("warmup", config["warmup"], 0)
    check_number("budget_s", config["budget_s"], strict=True)
    parse_baseline(config["baseline"])
    grid = [check_int_tuple(f, config[f]) for f in ("seq_lens", "batches", "hiddens")]
    models = list(config["models"])
    if not models:
        raise ConfigError("models", "is empty; list at least one {label, name, impls, options}")
    out = []
    for i, m in enumerate(models):
        field = f"models[{i}]"
        unknown = set(m) - {"label", "name", "impls", "options"}
        if unknown:
            raise ConfigError(field, f"unknown keys {sorted(unknown)}; accepted: label, name, "
                              "impls, options")
        name = m.get("name", "")
        cases.build_model_class(name)  # ConfigError for an unknown model
        impls = list(m.get("impls", ("cnn_rnn",)))
        for impl in impls:
            if impl not in cases.IMPLS:
                raise ConfigError(f"{field}.impls", f"unknown {impl!r}; accepted: "
                                  f"{', '.join(cases.IMPLS)}")
            if impl in ("flax", "torch") and name not in cases.FLAX_CELLS:
                raise ConfigError(f"{field}.impls", f"{impl!r} exists for "
                                  f"{', '.join(cases.FLAX_CELLS)} only, not {name!r}")
            if impl in ("stream", "recompute") and not hasattr(cases.build_model_class(name),
                                                               "step"):
                raise ConfigError(f"{field}.impls", f"{impl!r} needs a model that streams "
                                  f"(models/streaming.py), not {name!r}")
            if impl == "engine" and name not in cases.ENGINE_MODELS:
                raise ConfigError(f"{field}.impls", f"'engine' times the scan of "
                                  f"{', '.join(cases.ENGINE_MODELS)} only, not {name!r}")
        for (t, b, h), impl in itertools.product(itertools.product(*grid), impls):
            out.append(cases.Case(
                label=m.get("label", name), model=name, impl=impl, seq_len=t, batch=b, hidden=h,
                input_dim=config["input_dim"], num_classes=config["num_classes"],
                options=dict(m.get("options", {})) if impl in cases.OWN_OPTIONS else {}))
    labels = [(c.label, c.impl, c.seq_len, c.batch, c.hidden) for c in out]
    if len(set(labels)) != len(labels):
        raise ConfigError("models", "two models share a label; give each a distinct label")
    return out


def validate(config: Mapping[str, Any]) -> list[cases.Case]:
    """Return the config's cases after constructing each of our models once.

    So that a bad model option (or impl="cudnn" without a GPU) fails with one ConfigError line
    before anything is compiled or timed.
    """
    case_list = build_cases(config)
    for c in case_list:
        if c.impl in cases.OWN_OPTIONS:  # an engine row checks its options on its model
            cases.build_module(c)
    return case_list


def run_suite(config: Mapping[str, Any],
              on_row: Callable[[Row, int, int], None] | None = None,
              case_list: Sequence[cases.Case] | None = None) -> list[Row]:
    """Measure every case of the config; return the rows (with ratios), grouped by shape.

    Args:
      config: the benchmark config (see the module docstring).
      on_row: called as on_row(row, i, n) after each row is measured (progress, saving).
      case_list: `validate(config)`'s result, if the caller already has it (validating builds
        every model, so it is done once); None validates here.

    """
    if case_list is None:
        case_list = validate(config)
    if not cases.torch_available() and any(c.impl == "torch" for c in case_list):
        log.warning("torch is not importable: skipping the torch rows (pip install torch, or "
                    "the 'bench' extra)")
        case_list = [c for c in case_list if c.impl != "torch"]
    groups: dict[tuple[int, int, int], list[cases.Case]] = {}
    for c in case_list:
        groups.setdefault((c.seq_len, c.batch, c.hidden), []).append(c)
    rows: list[Row] = []
    for group in groups.values():
        for row in measure_group(group, config):
            rows.append(row)
            if on_row is not None:
                on_row(row, len(rows), len(case_list))
    add_ratios(rows, config["baseline"])
    return rows


def measure_group(group: Sequence[cases.Case], config: Mapping[str, Any]) -> list[Row]:
    """Prepare (compile) every case of a group, then time them interleaved; one row each."""
    prepared = [cases.prepare(c, config["learning_rate"], config["seed"]) for c in group]
    times = timing.interleaved_times(
        [p.step for p in prepared], repeats=config["repeats"], warmup=config["warmup"],
        budget_s=config["budget_s"] * len(group), min_repeats=min(config["min_repeats"],
                                                                  config["repeats"]))
    return [make_row(c, p, t) for c, p, t in zip(group, prepared, times, strict=True)]


def make_row(case: cases.Case, prep: cases.Prepared, samples: Sequence[float]) -> Row:
    """Return the result row of a measured case."""
    return {
        "model": case.model, "label": case.label, "impl": case.impl,
        "seq_len": case.seq_len, "batch": case.batch, "hidden": case.hidden,
        "input_dim": case.input_dim, "options": dict(case.options), "params": prep.params,
        "step_ms": timing.median_ms(samples), "step_ms_min": 1e3 * min(samples),
        "repeats": len(samples), "compile_s": prep.compile_s, "peak_bytes": prep.peak_bytes,
        "peak_source": timing.PEAK_SOURCE if prep.peak_bytes is not None else None,
        "notes": prep.notes,
    }


def add_ratios(rows: list[Row], baseline: str) -> None:
    """Add ratio_vs_baseline (step time), compile_ratio_vs_baseline and peak_ratio_vs_baseline.

    Each is this row's value over its baseline row's (see parse_baseline); rows without a
    baseline row, or whose baseline lacks the value, get no ratio. A baseline row gets 1.0.
    """
    parsed = parse_baseline(baseline)
    if parsed is None:
        return
    field, value = parsed
    keys = _MATCH[field]
    for row in rows:
        base = next((b for b in rows if _is_baseline(b, field, value)
                     and all(b[k] == row[k] for k in keys)), None)
        if base is None:
            continue
        row["baseline"] = f"{base['label']} [{base['impl']}] T={base['seq_len']} B={base['batch']}"
        for ratio, key in (("ratio_vs_baseline", "step_ms"),
                           ("compile_ratio_vs_baseline", "compile_s"),
                           ("peak_ratio_vs_baseline", "peak_bytes")):
            if row.get(key) is not None and base.get(key):
                row[ratio] = row[key] / base[key]
