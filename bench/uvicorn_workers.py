"""uvicorn with N worker processes, each accepting on its own SO_REUSEPORT socket.

    python -m bench.uvicorn_workers MODULE:FACTORY --workers 2 --host 127.0.0.1 --port 8000

What ``authserver serve`` does with gunicorn's ``reuse_port``, for the FastAPI apps of
``bench/guard_frameworks.py``: uvicorn's own ``--workers`` share one listening socket, and a load
generator that opens its 16 connections at once could have all of them accepted by one worker
(seen: in 5 of 10 rounds one of two workers did all the work, which halved req/s and moved CPU
per request by up to 20 %). With one socket per worker the kernel spreads the connections.
The app factory is called in each worker, after the fork.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket


def _listening_socket(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only for sockets
    # that say so (with proto 0, each answer's body waited ~40 ms for a delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _serve(factory: str, host: str, port: int) -> None:
    import uvicorn

    config = uvicorn.Config(factory, factory=True, host=host, port=port, proxy_headers=False,
                            access_log=False, log_level="warning", lifespan="on")
    uvicorn.Server(config).run(sockets=[_listening_socket(host, port)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("factory", help="MODULE:FACTORY of an ASGI app factory")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            try:
                _serve(args.factory, args.host, args.port)
            finally:
                os._exit(0)
        children.append(pid)

    def forward(signum, _frame):
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    for child in children:
        _, code = os.waitpid(child, 0)
        status = status or os.waitstatus_to_exitcode(code)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
