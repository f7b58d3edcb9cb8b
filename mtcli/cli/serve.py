"""`mtcli serve`: an export's tasks over HTTP, requests batched together. Imports no torch."""

import signal
from pathlib import Path

import typer

from mtcli.serve.limits import Limits

EPILOG = """Examples:

  mtcli serve                                      # export/ on http://127.0.0.1:8080 (docs: /docs)

  mtcli serve --model export/ --int8 --port 9000

  curl -s localhost:8080/v1/tasks/sts/score -H 'content-type: application/json' \\
       -d '{"rows": [["A dog runs.", "A dog is running."]]}'

  mtcli serve --engine ray --replicas 2            # the same application on Ray Serve
"""


def serve(
    model: Path = typer.Option(Path("export"), help="Folder written by `mtcli export`"),
    int8: bool = typer.Option(False, "--int8", help="Serve the int8 graphs (export --quantize int8)"),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)"),
    port: int = typer.Option(8080, help="Port to listen on"),
    max_batch_tokens: int = typer.Option(Limits.max_batch_tokens, "--max-batch-tokens",
                                         help="Tokens gathered into one batch"),
    max_wait_ms: float = typer.Option(Limits.max_wait_ms, "--max-wait-ms",
                                      help="How long a batch waits for more rows (under load)"),
    max_queue_rows: int = typer.Option(Limits.max_queue_rows, "--max-queue-rows",
                                       help="Rows waiting at most; beyond, 503 Retry-After"),
    max_body_bytes: int = typer.Option(Limits.max_body_bytes, "--max-body-bytes", help="Largest request body"),
    max_text_chars: int = typer.Option(Limits.max_text_chars, "--max-text-chars", help="Longest text in a row"),
    parallel_batches: int = typer.Option(Limits.parallel_batches, "--parallel-batches",
                                         help="Batches scored at once, each on cores / N threads"),
    shutdown_timeout: float = typer.Option(Limits.shutdown_timeout_s, "--shutdown-timeout",
                                           help="On SIGTERM: seconds to finish what is in flight (then 503)"),
    providers: str = typer.Option("cuda,cpu", help="onnxruntime providers in order of preference"),
    engine: str = typer.Option("local", help="local (uvicorn, this process) | ray (Ray Serve deployment)"),
    replicas: int = typer.Option(1, help="With --engine ray: replicas of the deployment"),
    ray_address: str = typer.Option(None, "--ray-address", help="With --engine ray: a running cluster (HOST:6379)"),
):
    """Serve the export's tasks over HTTP: score rows, embed sentences, list tasks, health, Prometheus metrics."""
    from rich.console import Console

    from mtcli.core.errors import UserError, excerpt

    console = Console(stderr=True, soft_wrap=True)
    limits = Limits(max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms, max_queue_rows=max_queue_rows,
                    max_body_bytes=max_body_bytes, max_text_chars=max_text_chars, parallel_batches=parallel_batches,
                    shutdown_timeout_s=shutdown_timeout)
    limits.check()
    provider_list = tuple(p.strip() for p in providers.split(",") if p.strip())
    if not 0 < port < 65536:
        raise UserError(f"--port {port}: must be between 1 and 65535")
    if engine not in ("local", "ray"):
        raise UserError(f"--engine {excerpt(engine)} is not one of local, ray")
    if not 1 <= replicas <= 256:
        raise UserError(f"--replicas {replicas}: must be from 1 to 256")
    if engine == "ray":
        try:
            from mtcli.serve.ray_serve import serve_on_ray
        except ImportError:
            raise UserError('--engine ray needs Ray Serve: pip install "mtcli[ray]" (ray[serve])') from None

        serve_on_ray(model, int8=int8, limits=limits, host=host, port=port, replicas=replicas, address=ray_address,
                     providers=provider_list, say=console.print)
        return
    try:
        import uvicorn

        from mtcli.serve.app import create_app
    except ImportError:
        raise UserError('mtcli serve needs the serve extra: pip install "mtcli[serve]"') from None
    app = create_app(model, int8=int8, limits=limits, providers=provider_list)
    listening = bind(host, port)   # before saying where it serves: a taken port or a bad host is one line
    console.print(f"serving {model} ({', '.join(app.state.scorer.tasks)}) on http://{host}:{port}  "
                  f"docs: http://{host}:{port}/docs")
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=limits.shutdown_timeout_s,
                            access_log=False)
    server = uvicorn.Server(config)
    # uvicorn turns SIGTERM into a graceful shutdown (no new connections, in-flight requests finished
    # within --shutdown-timeout, the rest answered 503), then raises the signal again for the handler
    # it found: let that be nothing, so a SIGTERM'd server exits 0
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with listening:
        server.run(sockets=[listening])
    console.print("stopped")


def bind(host: str, port: int):
    """A listening TCP socket on host:port, or one UserError saying why there is none."""
    import socket

    from mtcli.core.errors import UserError, excerpt

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        listening = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as e:   # not an address or a name this machine resolves
        raise UserError(f"--host {excerpt(host)}: not an address this machine can listen on "
                        f"({getattr(e, 'strerror', None) or e}): pass an IP address such as 127.0.0.1 or 0.0.0.0") \
            from None
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(address)
        listening.listen(2048)
    except OSError as e:
        listening.close()
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror}): pick another --port or --host") from None
    return listening
