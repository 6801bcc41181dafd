"""Using a trained run: predictions, exported artifacts, comparisons of runs.

`predict` and `forecast` (predictions), `export` (jax.export artifacts), `compare` (runs side
by side); every output is written whole or not at all (`outputs`).
"""
