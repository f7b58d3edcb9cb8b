"""Scoring through onnxruntime: the validated manifest, sessions, the file scorer. Torch-free."""
