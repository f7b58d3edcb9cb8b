"""mtcli.serve: the endpoints, dynamic batching and behaviour under bad input and load, against
the application in-process (httpx over ASGI) and a real server started on a free port with
torch unimportable."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest

from conftest import BLOCK_TORCH, REPO
from mtcli.inference.scorer import Scorer
from mtcli.serve.app import Limits, create_app
from mtcli.serve.batcher import Batcher, QueueFull

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _client(app):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def _with_app(app, body):
    async with app.router.lifespan_context(app):
        async with _client(app) as client:
            return await body(client)


def run(app, body):
    return asyncio.run(_with_app(app, body))


@pytest.fixture(scope="module")
def app(tiny_export):
    return create_app(tiny_export, providers=("cpu",))


def test_endpoints_answer_what_the_cli_writes(app, tiny_export):
    scorer = Scorer(tiny_export, providers=["cpu"])
    pairs = [["A dog runs.", "A dog is running."], ["Two men talk.", "A cat sleeps."]]

    async def body(client):
        tasks = (await client.get("/v1/tasks")).json()["tasks"]
        sts = (await client.post("/v1/tasks/sts/score", json={"rows": pairs})).json()
        sst = (await client.post("/v1/tasks/sst/score", json={"rows": ["What a film!"]})).json()
        para = (await client.post("/v1/tasks/para/score", json={"rows": pairs})).json()
        embed = (await client.post("/v1/embed", json={"sentences": ["A dog runs."]})).json()
        health = [(await client.get(p)).status_code for p in ("/healthz", "/readyz", "/docs", "/openapi.json")]
        metrics = (await client.get("/metrics")).text
        return tasks, sts, sst, para, embed, health, metrics

    tasks, sts, sst, para, embed, health, metrics = run(app, body)
    by_name = {t["name"]: t for t in tasks}
    assert by_name["sst"]["kind"] == "multiclass" and by_name["sst"]["labels"][0] == "very negative"
    assert by_name["sts"]["inputs"] == ["sentence1", "sentence2"] and by_name["sts"]["range"] == [0.0, 5.0]
    expected = scorer.score("sts", [tuple(p) for p in pairs])
    assert np.allclose([r["score"] for r in sts["results"]], expected, atol=1e-6)
    probabilities = scorer.score("sst", ["What a film!"])[0]
    assert sst["results"][0]["label"] == by_name["sst"]["labels"][int(probabilities.argmax())]
    assert np.allclose(list(sst["results"][0]["probabilities"].values()), probabilities, atol=1e-6)
    assert set(para["results"][0]["probabilities"]) == {"duplicate"}  # the CLI's p_duplicate column
    assert len(embed["embeddings"][0]) == embed["dim"] == scorer.manifest["embedding"]["dim"]
    assert health == [200, 200, 200, 200]
    assert 'mtcli_requests_total{endpoint="/v1/tasks/{task}/score",status="200"} 3.0' in metrics
    assert "mtcli_batch_rows_bucket" in metrics and "mtcli_queue_rows 0.0" in metrics


@pytest.mark.parametrize("path, payload, status, message", [
    ("/v1/tasks/sts/score", b"{not json", 400, "body: not valid JSON"),
    ("/v1/tasks/nli/score", {"rows": ["x"]}, 404, "task 'nli': unknown; this server has sst, para, sts"),
    ("/v1/tasks/sts/score", {"rows": [["only one"]]}, 422, "rows[0]: expected a (sentence1, sentence2) pair of str"),
    ("/v1/tasks/sst/score", {"rows": ["fine", ""]}, 422, "rows[1]: empty text"),
    ("/v1/tasks/sst/score", {"rows": ["fine", 7]}, 422, "rows[1]"),
    ("/v1/tasks/sst/score", {"text": "x"}, 422, "rows: Field required"),
    ("/v1/tasks/sts/score", {"rows": [["a", "b" * 30_000]]}, 422, "rows[0][1]: 30000 characters, over the limit"),
    ("/v1/embed", {"sentences": ["ok", " "]}, 422, "sentences[1]: empty text"),
    ("/v1/tasks/sst/score", {"rows": ["x " * 600_000]}, 413, "body: over the size limit of 1048576 bytes"),
    ("/v1/tasks/sst/score", b'{"rows": ["\\ud800"]}', 422, "rows[0]: not valid Unicode text (a lone surrogate"),
    ("/v1/tasks/sts/score", b'{"rows": [["ok", "a\\udfffb"]]}', 422, "rows[0][1]: not valid Unicode text"),
    ("/v1/embed", b'{"sentences": ["\\ud800"]}', 422, "sentences[0]: not valid Unicode text"),
    ("/v1/tasks/sst/score", b'{"rows": ["\xff\xfe"]}', 400, "body: not valid JSON"),
    ("/v1/tasks/sst/score", b"[" * 1000 + b"]" * 1000, 400, "body: not valid JSON"),
    ("/v1/tasks/sst/score", b'{"rows": [], "n": ' + b"9" * 5000 + b"}", 400, "body: not valid JSON"),
    ("/v1/nowhere", {"rows": []}, 404, "/v1/nowhere: no such endpoint"),
    ("/healthz", {"rows": []}, 405, "POST /healthz: method not allowed"),
])
def test_bad_requests_are_one_line_4xx_and_the_server_keeps_serving(app, path, payload, status, message):
    async def body(client):
        if isinstance(payload, bytes):
            bad = await client.post(path, content=payload, headers={"content-type": "application/json"})
        else:
            bad = await client.post(path, json=payload)
        good = await client.post("/v1/tasks/sst/score", json={"rows": ["still here"]})
        return bad, good

    bad, good = run(app, body)
    assert bad.status_code == status, bad.text
    error = bad.json()["error"]
    assert "\n" not in error and error.startswith(message), error
    assert good.status_code == 200


class _SlowScorer:
    """A scorer whose batches wait for a signal, to fill the queue deterministically."""

    def __init__(self, scorer):
        self.scorer, self.tokenizer, self.release, self.batches = scorer, scorer.tokenizer, threading.Event(), []
        self.entered = 0

    def score_window(self, task, rows, batch_size=64):
        self.entered += 1
        self.release.wait(10)
        self.batches.append(len(rows))
        return self.scorer.score_window(task, rows, batch_size)


def test_rows_of_concurrent_requests_are_batched_and_returned_in_order(tiny_export):
    scorer = _SlowScorer(Scorer(tiny_export, providers=["cpu"]))

    async def body():
        batcher = Batcher(scorer, max_batch_tokens=10_000, max_wait_ms=50, max_queue_rows=100)
        batcher.start()
        first = asyncio.create_task(batcher.submit("sst", [("the first",)]))  # alone: scored at once
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(batcher.submit("sst", [(f"row {i} of {j}",) for j in range(3)]))
                for i in range(10)]
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull):  # 30 rows queued, 80 more would pass 100
            await batcher.submit("sst", [("x",)] * 80)
        scorer.release.set()
        results = await asyncio.gather(first, *rest)
        await batcher.stop()
        return results

    results = asyncio.run(body())
    assert scorer.batches == [1, 30]  # the lone request alone; the ten waiting ones in one batch
    direct = scorer.scorer.score("sst", [f"row 4 of {j}" for j in range(3)])
    assert np.allclose(results[5], direct, atol=1e-6)


@pytest.mark.parametrize("parallel", [1, 2])
def test_parallel_batches_are_scored_at_once(tiny_export, parallel):
    """--parallel-batches 2: a second batch is gathered and scored while the first one runs."""
    scorer = _SlowScorer(Scorer(tiny_export, providers=["cpu"]))

    async def body():
        batcher = Batcher(scorer, max_wait_ms=0, parallel=parallel)
        batcher.start()
        first = asyncio.create_task(batcher.submit("sst", [("the first",)]))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(batcher.submit("sst", [("the second",), ("and a third",)]))
        await asyncio.sleep(0.05)
        entered = scorer.entered   # batches inside the scorer before either is let go
        scorer.release.set()
        results = await asyncio.gather(first, second)
        await batcher.stop()
        return entered, results

    entered, (first, second) = asyncio.run(body())
    assert entered == parallel and sorted(scorer.batches) == [1, 2]
    assert np.allclose(second, scorer.scorer.score("sst", ["the second", "and a third"]), atol=1e-6)


def test_a_full_queue_is_503_with_retry_after(tiny_export):
    app = create_app(tiny_export, providers=("cpu",), limits=Limits(max_queue_rows=4))
    slow = _SlowScorer(app.state.scorer)
    app.state.batcher.scorer = slow

    async def body(client):
        waiting = [asyncio.create_task(client.post("/v1/tasks/sst/score", json={"rows": ["a", "b"]}))
                   for _ in range(6)]
        await asyncio.sleep(0.3)  # the first batch is held in the scorer; the queue fills behind it
        slow.release.set()
        return [await w for w in waiting]

    answered = run(app, body)
    refused = [r for r in answered if r.status_code == 503]
    assert refused and all(r.headers["retry-after"] == "1" for r in refused)
    assert refused[0].json()["error"].startswith("the queue is full (4 rows): retry in 1 s")
    assert sorted(r.status_code for r in answered if r.status_code != 503) == [200] * (6 - len(refused))
    assert len(refused) <= 4


def test_one_poisoned_request_fails_no_other_request(tiny_export):
    """Rows a scorer cannot take, batched with good ones, fail their own request only: the batch
    is scored again request by request."""
    scorer = Scorer(tiny_export, providers=["cpu"])

    class Poisoned(_SlowScorer):
        def score_window(self, task, rows, batch_size=64):
            if any("poison" in text for row in rows for text in row):
                raise TypeError("the tokenizer cannot take this text")
            return super().score_window(task, rows, batch_size)

    poisoned = Poisoned(scorer)
    poisoned.release.set()

    async def body():
        batcher = Batcher(poisoned, max_batch_tokens=10_000, max_wait_ms=200)
        batcher.start()
        jobs = [asyncio.create_task(batcher.submit("sst", [("poison",) if i == 7 else (f"row {i}",)]))
                for i in range(30)]
        answers = await asyncio.gather(*jobs, return_exceptions=True)
        await batcher.stop()
        return answers

    answers = asyncio.run(body())
    assert isinstance(answers[7], TypeError)
    assert all(isinstance(a, np.ndarray) for i, a in enumerate(answers) if i != 7)
    assert np.allclose(answers[3], scorer.score("sst", ["row 3"]), atol=1e-6)


def test_concurrent_requests_with_a_lone_surrogate_among_them_all_answer(app):
    async def body(client):
        good = [client.post("/v1/tasks/sst/score", json={"rows": [f"fine {i}"]}) for i in range(29)]
        bad = client.post("/v1/tasks/sst/score", content=b'{"rows": ["\\ud800"]}',
                          headers={"content-type": "application/json"})
        return await asyncio.gather(bad, *good)

    bad, *good = run(app, body)
    assert bad.status_code == 422 and bad.json()["error"].startswith("rows[0]: not valid Unicode")
    assert [r.status_code for r in good] == [200] * 29


def test_a_request_cut_by_shutdown_is_503_not_500():
    from mtcli.serve.app import Gate, Service
    from mtcli.serve.metrics import ServeMetrics

    async def slow(scope, receive, send):
        await asyncio.sleep(60)

    async def body():
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        service = Service(None, None, ServeMetrics(), Limits())
        gate = Gate(slow, service_of=lambda: service)
        request = asyncio.create_task(gate({"type": "http", "headers": [], "method": "POST", "path": "/"}, receive,
                                           send))
        await asyncio.sleep(0.05)
        request.cancel()   # what uvicorn does past --shutdown-timeout
        await request
        return sent

    sent = asyncio.run(body())
    assert sent[0]["status"] == 503 and b"the server stopped before this request finished" in sent[1]["body"]


@pytest.mark.parametrize("flag, value", [("--shutdown-timeout", "nan"), ("--shutdown-timeout", "-1"),
                                         ("--max-wait-ms", "inf"), ("--max-batch-tokens", "0"),
                                         ("--parallel-batches", "100000"), ("--max-body-bytes", "99999999999"),
                                         ("--replicas", "0"), ("--port", "70000")])
def test_every_serve_flag_is_bounded(tiny_export, flag, value):
    from conftest import run_cli_here

    result = run_cli_here("serve", "--model", tiny_export, flag, value)
    err = result.stderr.decode()
    assert result.returncode == 2 and err.startswith(f"mtcli: error: {flag} ") and err.count("\n") == 1, err


# ---------------------------------------------------------------- a real server

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(*args):
    code = BLOCK_TORCH + f"sys.argv = ['mtcli', 'serve', *{[str(a) for a in args]!r}]\nfrom mtcli.cli import main\nmain()\n"
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def _wait_ready(port: int, process, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.stderr.read().decode())
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("the server did not become ready")


def test_a_real_server_without_torch_finishes_in_flight_work_on_sigterm(tiny_export):
    port = _free_port()
    server = _server("--model", tiny_export, "--port", port, "--providers", "cpu")
    try:
        _wait_ready(port, server)
        rows = [[f"a long sentence number {i} " * 6, f"another one {i} " * 6] for i in range(3000)]
        answer = {}
        thread = threading.Thread(target=lambda: answer.setdefault(
            "r", httpx.post(f"http://127.0.0.1:{port}/v1/tasks/sts/score", json={"rows": rows}, timeout=120)))
        thread.start()
        time.sleep(0.3)  # the request is in flight
        server.send_signal(signal.SIGTERM)
        thread.join(120)
        code = server.wait(60)
    finally:
        if server.poll() is None:
            server.kill()
    assert answer["r"].status_code == 200 and len(answer["r"].json()["results"]) == 3000
    assert code == 0, server.stderr.read().decode()


@pytest.mark.parametrize("damage, message", [
    (lambda export: (export / "manifest.json").unlink(), "manifest.json: not found"),
    (lambda export: (export / "sts.onnx").write_bytes(b"garbage"), "sts.onnx: cannot load the ONNX graph"),
])
def test_a_missing_or_damaged_export_refuses_to_start(tiny_export, tmp_path, damage, message):
    import shutil

    copy = tmp_path / "export"
    shutil.copytree(tiny_export, copy)
    damage(copy)
    server = _server("--model", copy, "--port", _free_port(), "--providers", "cpu")
    _, err = server.communicate(timeout=120)
    lines = err.decode().strip().splitlines()
    assert server.returncode == 2 and len(lines) == 1 and lines[0].startswith("mtcli: error: ")
    assert message in lines[0]


@pytest.mark.parametrize("host, message", [("127.0.0.1", "cannot listen on 127.0.0.1:"),
                                           ("no-such-host.invalid", "--host 'no-such-host.invalid': not an address")])
def test_a_taken_port_or_a_bad_host_is_one_line_before_any_announcement(tiny_export, host, message):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = _server("--model", tiny_export, "--port", port, "--providers", "cpu", "--host", host)
        out, err = server.communicate(timeout=120)
    lines = err.decode().strip().splitlines()
    assert server.returncode == 2 and len(lines) == 1 and lines[0].startswith("mtcli: error: "), err.decode()
    assert message in lines[0] and "serving" not in (out + err).decode()
