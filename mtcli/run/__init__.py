"""The run folder: what `mtcli train` writes, and what report, compare, eval, export, sweep and
resume read (folder.py); the data a run read, with digests (provenance.py); a sweep folder's
Optuna journal (journal.py). Torch-free."""
