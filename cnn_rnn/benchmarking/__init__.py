"""Training-step benchmarks of the model families.

Our recurrent layers against flax's and PyTorch's, CNNs against RNNs against parallel linear
recurrences over sequence length, and remat's memory/time trade.

  timing.py   compile time, peak memory and interleaved step timing of jitted steps
  case.py     what one row measures (Case) and a case ready to time (Prepared)
  cases.py    one (model, implementation, shape) ready to run: the shared training step
  suite.py    a config's grid of cases, measured group by group, with ratios to a baseline row
  report.py   progress lines, the markdown table, results.json and the step-time plot

The entry point is `python -m experiments.benchmark --config=configs/benchmarks/<name>.py`.
"""
