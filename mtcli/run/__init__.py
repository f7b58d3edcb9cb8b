"""The run folder: what `mtcli train` writes, and what report, compare, eval, export, sweep and
resume read (folder.py). Torch-free."""
