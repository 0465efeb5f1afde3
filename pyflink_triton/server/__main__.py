"""``python -m pyflink_triton.server --model-repository DIR``: a local Triton until interrupted."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Sequence

from . import LocalTritonServer, TritonServerSetupError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pyflink_triton.server",
        description="Run a real local Triton Inference Server (CPU, Python backend) on "
                    "127.0.0.1 until interrupted, and print its endpoint.")
    parser.add_argument("--model-repository", required=True, help="Triton model repository")
    parser.add_argument("--http-port", type=int, default=8000, help="HTTP port (default 8000)")
    parser.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001)")
    parser.add_argument("--log-file", help="where Triton's log goes (default: a temp file)")
    parser.add_argument("--startup-timeout", type=float, default=120.0,
                        help="seconds to wait for the models to be ready (default 120)")
    parser.add_argument("--exit-timeout", type=int, default=5,
                        help="seconds Triton waits for in-flight requests on exit (default 5)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    server = LocalTritonServer(args.model_repository, args.http_port, args.grpc_port,
                               args.log_file, args.startup_timeout, args.exit_timeout)
    # SIGTERM ends the loop below like Ctrl-C does, so the server is always stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server.start()
        print(f"Triton is ready. endpoint: {server.http_endpoint}  gRPC: {server.grpc_endpoint}  "
              f"log: {server.log_path}", flush=True)
        while server.process is not None and server.process.poll() is None:
            time.sleep(0.5)
        print(f"tritonserver exited. Log tail:\n{server.log_tail()}", file=sys.stderr)
        return 1
    except TritonServerSetupError as e:
        print(e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
