"""`mtcli serve` under closed-loop load, side by side with what it is measured against.

    python bench/serve.py --export export/ --int8-export /tmp/export-int8     # the table
    python bench/serve.py --export export/ --soak 600                          # 10 minutes at concurrency 64
    python bench/serve.py --export export/ --kill-replica                      # Ray Serve, a replica killed
    python bench/serve.py --export export/ --peer-only --peer-python P         # embeddings against the peer only

Clients are aiohttp (an async HTTP client library), closed-loop: each of C clients sends a
request, waits for the answer, sends the next, for --seconds after a warm-up; requests of 1
or 32 rows of the bundled dev sets (STS pairs, SST sentences). Measured per configuration:
rows/s and p50/p95/p99 latency, on distinct rows of the bundled training sets. Side by side in
one run, on the same rows and threads:

  offline    the ceiling: Scorer.score over the same rows in one process (what `mtcli score` runs)
  naive      a plain FastAPI app around Scorer, each request scored alone (what users write today)
  peer       embeddings from a peer server for the same backbone: infinity-emb serving the
             packaged all-MiniLM-L6-v2 folder if it is installed (--peer-python), else a
             FastAPI + sentence-transformers endpoint as its docs show
  mtcli      `mtcli serve`, dynamic batching

Servers run as their own processes on this machine. The clients share its cores: they run
at a lower scheduling priority (nice 5; servers and the offline ceiling at 0), so a server
is measured as the machine's main work. The sgemm roof is measured in the same run.
"""

import argparse
import asyncio
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))

from roof import sgemm_gflops  # noqa: E402


def dev_rows(task: str, count: int = 1024) -> list:
    """`count` rows of the task's bundled training split in which no sentence appears twice (a
    repeated sentence would let the offline scorer's deduplication over its long windows flatter
    the ceiling: a server's batch holds only the rows of the requests in flight)."""
    from mtcli.core.data import read_split
    from mtcli.core.tasks import load_task_file

    rows, seen = [], set()
    for ex in read_split(load_task_file()[task], "train").examples:
        if len(rows) == count:
            break
        if not seen.intersection(ex.texts) and len(set(ex.texts)) == len(ex.texts):
            rows.append(list(ex.texts))
            seen.update(ex.texts)
    return [r[0] for r in rows] if len(rows[0]) == 1 else rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _normal_priority() -> None:
    """In a child: back to the default priority (the bench process itself runs at nice 5)."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    except OSError:  # lowering niceness needs privileges: the child then shares the clients' priority
        pass


def rss_mb(pid: int) -> float:
    try:
        return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())[1]) / 1024
    except (OSError, TypeError):
        return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """A server process on a free port, ready when `health` answers 200."""

    def __init__(self, command: list[str], port: int, health: str = "/readyz", env=None, timeout: float = 300):
        import httpx

        self.port = port
        self.process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        env={**os.environ, **(env or {})}, start_new_session=True,
                                        preexec_fn=_normal_priority)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{command[:4]} exited: {self.process.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}{health}", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{command[:4]}: not ready in {timeout} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


async def closed_loop(url: str, make_body, rows_per_request: int, concurrency: int, seconds: float,
                      warmup: float = 2.0, retries: int = 0, server_pid: int | None = None) -> dict:
    """C clients, each one request at a time; the requests that completed inside the measured window
    (after the warm-up, `seconds` long: requests still in flight at its end are not counted).
    aiohttp (its HTTP parser in C): the clients share the server's cores, and the lighter they
    are, the more of the machine the server measured gets. The cores each side used in the
    window (CPU seconds / seconds) come back as client_cores and, given its pid, server_cores."""
    import aiohttp

    latencies, errors, recovered = [], 0, 0
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds
    timeout = aiohttp.ClientTimeout(total=120)

    async def client(worker: int, http: aiohttp.ClientSession):
        nonlocal errors, recovered
        i = worker
        while time.perf_counter() < stop_at:
            body = make_body(i)
            i += concurrency
            sent = time.perf_counter()
            for attempt in range(retries + 1):
                try:
                    async with http.post(url, json=body, timeout=timeout) as answer:
                        await answer.read()
                        ok = answer.status == 200
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    ok = False
                if ok:
                    recovered += attempt > 0
                    break
                await asyncio.sleep(0.2 * (attempt + 1))
            done = time.perf_counter()
            if measure_from <= done <= stop_at:  # what completed inside the window (it is `seconds` long)
                if ok:
                    latencies.append(done - sent)
                else:
                    errors += 1

    cpu = {}

    async def account():
        for when in ("from", "to"):
            await asyncio.sleep(max(0.0, (measure_from if when == "from" else stop_at) - time.perf_counter()))
            cpu[when] = (time.process_time(), cpu_seconds(server_pid) if server_pid else 0.0)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        await asyncio.gather(account(), *(client(w, http) for w in range(concurrency)))
    used = {"client_cores": (cpu["to"][0] - cpu["from"][0]) / seconds,
            **({"server_cores": (cpu["to"][1] - cpu["from"][1]) / seconds} if server_pid else {})}
    ms = np.array(latencies) * 1000
    return {"rows_per_s": len(latencies) * rows_per_request / seconds, "requests": len(latencies), "errors": errors,
            "recovered": recovered, **used, **({f"p{q}": float(np.percentile(ms, q)) for q in (50, 95, 99)} if len(ms) else {})}


def offline_ceiling(export: str, task: str, rows: list, int8: bool, threads: int) -> float:
    """Rows/s of Scorer.score on the rows in one process (warm)."""
    code = textwrap.dedent(f"""
        import json, sys, time
        from mtcli.inference.scorer import Scorer
        rows = json.load(sys.stdin)
        scorer = Scorer({export!r}, int8={int8}, providers=("cpu",), threads={threads})
        scorer.score({task!r}, rows[:64])
        start = time.perf_counter(); scorer.score({task!r}, rows); print(len(rows) / (time.perf_counter() - start))
    """)
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps(rows), capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, preexec_fn=_normal_priority)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return float(done.stdout.strip())


NAIVE_APP = """
import sys
from fastapi import FastAPI
from mtcli import Scorer

scorer = Scorer(sys.argv[1], int8=sys.argv[2] == "int8", providers=("cpu",))
app = FastAPI()

@app.get("/healthz")
def health():
    return {"ok": True}

@app.post("/score/{task}")
def score(task: str, body: dict):      # each request scored alone, as users write it today
    return {"results": scorer.score(task, [tuple(r) if isinstance(r, list) else r for r in body["rows"]]).tolist()}

if __name__ == "__main__":
    import uvicorn
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]), log_level="warning")
"""

ST_PEER = """
import sys
from fastapi import FastAPI
from sentence_transformers import SentenceTransformer

model = SentenceTransformer(sys.argv[1], device="cpu")
app = FastAPI()

@app.get("/healthz")
def health():
    return {"ok": True}

@app.post("/embed")
def embed(body: dict):                  # the endpoint sentence-transformers' docs show
    return {"embeddings": model.encode(body["sentences"]).tolist()}

if __name__ == "__main__":
    import uvicorn
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def backbone_dir() -> str:
    from mtcli.core.paths import default_model_dir

    return str(default_model_dir())   # a sentence-transformers folder (modules.json, 1_Pooling)


def table(title: str, results: list[dict]) -> None:
    print(f"\n{title}\n")
    print("| server | task | precision | rows/request | concurrency | rows/s | p50 ms | p95 ms | p99 ms | errors "
          "| server cores | client cores |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['server']} | {r['task']} | {r['precision']} | {r['size']} | {r['concurrency']} | "
              f"{r['rows_per_s']:.0f} | {r.get('p50', float('nan')):.1f} | {r.get('p95', float('nan')):.1f} | "
              f"{r.get('p99', float('nan')):.1f} | {r['errors']} | {r.get('server_cores', float('nan')):.2f} | "
              f"{r['client_cores']:.2f} |")


def run_table(args) -> None:
    exports = {"fp32": (args.export, False)}
    if args.int8_export:
        exports["int8"] = (args.int8_export, True)
    roof = sgemm_gflops()
    print(f"sgemm roof {roof:.0f} GFLOP/s; {os.cpu_count()} cores shared by servers and clients; "
          f"{args.seconds:g} s per configuration after 2 s warm-up")
    results = []
    for precision, (export, int8) in exports.items():
        for task in args.tasks:
            rows = dev_rows(task, 2048)
            ceiling = lambda: offline_ceiling(export, task, rows, int8, args.threads)  # noqa: E731
            for name, command, url in (
                    ("mtcli", [sys.executable, "-m", "mtcli", "serve", "--model", export, "--providers", "cpu",
                               *(["--int8"] if int8 else []), *shlex.split(args.serve_args), "--port"],
                     "/v1/tasks/{task}/score"),
                    ("naive", [sys.executable, "-c", NAIVE_APP, export, "int8" if int8 else "fp32"], "/score/{task}")):
                if name == "naive" and not args.naive:
                    continue
                port = free_port()
                server = Server([*command, str(port)], port, "/readyz" if name == "mtcli" else "/healthz",
                                env={"PYTHONPATH": str(REPO)})
                try:
                    for size in args.sizes:
                        for concurrency in args.concurrency:
                            # the ceiling right before and right after the configuration it is compared with
                            # (the server idle meanwhile): the machine's speed drifts by 10-25% within minutes
                            compared = name == "mtcli" and concurrency == max(args.concurrency)
                            before = ceiling() if compared else None
                            body = lambda i, size=size: {"rows": [rows[(i * size + k) % len(rows)] for k in range(size)]}  # noqa: E731
                            r = asyncio.run(closed_loop(f"http://127.0.0.1:{port}{url.format(task=task)}", body, size,
                                                        concurrency, args.seconds, server_pid=server.process.pid))
                            r.update(server=name, task=task, precision=precision, size=size, concurrency=concurrency)
                            if compared:
                                r["ceilings"] = [before, ceiling()]
                            results.append(r)
                            print(json.dumps(r), flush=True)
                finally:
                    server.stop()
    table("scoring", results)
    print("\nagainst the offline ceiling (the same rows, Scorer.score in one process, measured right before and "
          "right after):")
    for r in results:
        if "ceilings" in r:
            ceiling = float(np.mean(r["ceilings"]))
            print(f"  {r['task']} {r['precision']} {r['size']}-row requests at concurrency {r['concurrency']}: "
                  f"{r['rows_per_s']:.0f} of {ceiling:.0f} rows/s ({r['ceilings'][0]:.0f} before, "
                  f"{r['ceilings'][1]:.0f} after) = {r['rows_per_s'] / ceiling:.0%}")
    if args.peer:
        run_peer(args)


def run_peer(args) -> None:
    """Embeddings: mtcli serve's /v1/embed against the peer server, same sentences."""
    sentences = dev_rows("sst", 2048)
    peers = []
    port = free_port()
    peers.append(("mtcli", Server([sys.executable, "-m", "mtcli", "serve", "--model", args.export, "--providers", "cpu",
                                   "--port", str(port)], port, env={"PYTHONPATH": str(REPO)}),
                  f"http://127.0.0.1:{port}/v1/embed"))
    results = []
    try:
        port = free_port()
        if args.peer_python:
            command = [str(Path(args.peer_python).with_name("infinity_emb")), "v2", "--model-id", backbone_dir(),
                       "--port", str(port), "--engine", "torch", "--device", "cpu", "--no-bettertransformer"]
            peers.append(("infinity-emb", Server(command, port, "/health", timeout=600),
                          f"http://127.0.0.1:{port}/embeddings"))
        else:
            peers.append(("sentence-transformers", Server([sys.executable, "-c", ST_PEER, backbone_dir(), str(port)],
                                                          port, "/healthz"), f"http://127.0.0.1:{port}/embed"))
        for name, server, url in peers:
            for size in args.sizes:
                for concurrency in args.concurrency:
                    def body(i, size=size, name=name):
                        batch = [sentences[(i * size + k) % len(sentences)] for k in range(size)]
                        if name == "infinity-emb":
                            return {"input": batch, "model": backbone_dir()}
                        return {"sentences": batch}
                    r = asyncio.run(closed_loop(url, body, size, concurrency, args.seconds,
                                                server_pid=server.process.pid))
                    r.update(server=name, task="embed", precision="fp32", size=size, concurrency=concurrency)
                    results.append(r)
                    print(json.dumps(r), flush=True)
    finally:
        for _, server, _ in peers:
            server.stop()
    table("embeddings: mtcli serve against the peer", results)


def run_soak(args) -> None:
    rows = dev_rows("sts", 2048)
    port = free_port()
    server = Server([sys.executable, "-m", "mtcli", "serve", "--model", args.export, "--providers", "cpu", "--port",
                     str(port)], port, env={"PYTHONPATH": str(REPO)})
    samples = []

    async def watch():
        while True:
            samples.append((time.perf_counter(), rss_mb(server.process.pid)))
            await asyncio.sleep(5)

    async def main():
        watcher = asyncio.create_task(watch())
        size = args.sizes[0]
        body = lambda i: {"rows": [rows[(i * size + k) % len(rows)] for k in range(size)]}  # noqa: E731
        result = await closed_loop(f"http://127.0.0.1:{port}/v1/tasks/sts/score", body, size, args.concurrency[-1],
                                   args.soak, warmup=5)
        watcher.cancel()
        return result

    try:
        result = asyncio.run(main())
    finally:
        server.stop()
    rss = np.array([m for _, m in samples])
    tenth = max(1, len(rss) // 10)
    print(f"soak: {args.soak:g} s at concurrency {args.concurrency[-1]}, {args.sizes[0]}-row STS requests: "
          f"{result['requests']} requests, {result['errors']} errors, {result['rows_per_s']:.0f} rows/s, "
          f"p99 {result.get('p99', float('nan')):.0f} ms")
    print(f"server RSS: first minute {rss[:tenth].mean():.0f} MB, last minute {rss[-tenth:].mean():.0f} MB, "
          f"peak {rss.max():.0f} MB ({len(rss)} samples every 5 s)")


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def run_kill_replica(args) -> None:
    """Ray Serve with 2 replicas under load; one replica killed; failed requests retried."""
    rows = dev_rows("sts", 2048)
    port = free_port()
    server = Server([sys.executable, "-m", "mtcli", "serve", "--model", args.export, "--providers", "cpu", "--port",
                     str(port), "--engine", "ray", "--replicas", "2"], port, env={"PYTHONPATH": str(REPO)}, timeout=600)

    def kill_one():
        """SIGKILL the first replica process (Ray titles its workers `ray::ServeReplica:...`)."""
        time.sleep(args.seconds / 3 + 2)
        replicas = sorted(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                          and b"ServeReplica" in _cmdline(p))
        if replicas:
            os.kill(replicas[0], signal.SIGKILL)
            print(f"killed replica pid {replicas[0]} of {len(replicas)}", flush=True)
        else:
            print("no replica process found: nothing was killed", flush=True)

    import threading

    killer = threading.Thread(target=kill_one)
    killer.start()
    try:
        body = lambda i: {"rows": [rows[(i + k) % len(rows)] for k in range(8)]}  # noqa: E731
        result = asyncio.run(closed_loop(f"http://127.0.0.1:{port}/v1/tasks/sts/score", body, 8, 16, args.seconds,
                                         retries=3))
    finally:
        killer.join()
        server.stop()
    print(f"Ray Serve, 2 replicas, one killed under load at concurrency 16 ({args.seconds:g} s): "
          f"{result['requests']} answered, {result['recovered']} of them after a retry, {result['errors']} lost")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", default=str(REPO / "export"))
    parser.add_argument("--int8-export", help="an export with int8 graphs (mtcli export --quantize int8)")
    parser.add_argument("--tasks", nargs="+", default=["sts", "sst"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 64])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--no-naive", dest="naive", action="store_false")
    parser.add_argument("--no-peer", dest="peer", action="store_false")
    parser.add_argument("--peer-python", help="a Python with infinity-emb installed (else sentence-transformers)")
    parser.add_argument("--serve-args", default="", help="more flags for mtcli serve, e.g. '--parallel-batches 2'")
    parser.add_argument("--soak", type=float, help="seconds of load at the highest concurrency, watching memory")
    parser.add_argument("--kill-replica", action="store_true")
    parser.add_argument("--peer-only", action="store_true", help="only the embeddings against the peer server")
    args = parser.parse_args()
    os.nice(5)  # the clients: below the servers they measure (see the module's note)
    if args.soak:
        run_soak(args)
    elif args.kill_replica:
        run_kill_replica(args)
    elif args.peer_only:
        run_peer(args)
    else:
        run_table(args)


if __name__ == "__main__":
    main()
