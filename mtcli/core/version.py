"""mtcli's version, written into checkpoints, exports and served pages (pyproject.toml states the
same; tests/test_layout.py checks that they agree)."""

__version__ = "0.1.0"
