"""Sweeps: a search over recipes with Optuna, every trial ordinary run folders (study.py)."""
