"""The run folder: what `mtcli train` writes, and what report, compare, eval, export, sweep and
resume read (folder.py); metrics.jsonl (metrics_log.py); the best epoch's dev predictions
(predictions.py); the data a run read, with digests (provenance.py); a distilled run's teacher
predictions (teacher_labels.py); a sweep folder's Optuna journal (journal.py). Torch-free."""
