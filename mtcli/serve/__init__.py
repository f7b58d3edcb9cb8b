"""Online scoring of an export over HTTP: the FastAPI application (app.py), dynamic batching
(batcher.py), Prometheus metrics (metrics.py) and the Ray Serve deployment (ray_serve.py).
Torch-free; needs the `serve` extra (FastAPI, uvicorn, prometheus-client)."""
