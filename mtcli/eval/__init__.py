"""Evaluation, error analysis, the run report and plots. Torch-free: both eval backends use it."""
