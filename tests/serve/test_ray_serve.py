"""mtcli.serve.ray_serve: `mtcli serve --engine ray` runs the same application on Ray Serve (a
local Ray instance): the same answers as the local server, the same one-line errors."""

import signal

import httpx
import numpy as np
import pytest

from mtcli.inference.scorer import Scorer

pytest.importorskip("ray.serve")

from test_app import _free_port, _server, _wait_ready  # noqa: E402


def test_the_application_on_ray_serve(tiny_export):
    port = _free_port()
    server = _server("--model", tiny_export, "--port", port, "--providers", "cpu", "--engine", "ray",
                     "--replicas", "1")
    try:
        _wait_ready(port, server, timeout=240)
        base = f"http://127.0.0.1:{port}"
        pairs = [["A dog runs.", "A dog is running."], ["Two men talk.", "A cat sleeps."]]
        answer = httpx.post(f"{base}/v1/tasks/sts/score", json={"rows": pairs}, timeout=60)
        assert answer.status_code == 200, answer.text
        expected = Scorer(tiny_export, providers=["cpu"]).score("sts", [tuple(p) for p in pairs])
        assert np.allclose([r["score"] for r in answer.json()["results"]], expected, atol=1e-6)
        bad = httpx.post(f"{base}/v1/tasks/sts/score", json={"rows": [["only one"]]}, timeout=60)
        assert bad.status_code == 422 and bad.json()["error"].startswith("rows[0]: expected a (sentence1, sentence2)")
        tasks = httpx.get(f"{base}/v1/tasks", timeout=60).json()["tasks"]
        assert [t["name"] for t in tasks] == ["sst", "para", "sts"]
        embed = httpx.post(f"{base}/v1/embed", json={"sentences": ["a", "b"]}, timeout=60).json()
        assert len(embed["embeddings"]) == 2
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(120)
        except Exception:
            server.kill()
    assert server.returncode == 0, (server.returncode, server.stderr.read().decode()[-2000:])
