"""What the tests of `mnistgen serve` share: tiny run folders to serve, and the app on a real server."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask

from mnistgen.cli import main


def tiny(preset, out, *extra):
    """A run of ``preset`` trained for one epoch on 128 digits: enough to serve, in seconds."""
    assert main(["train", preset, "--subset", "128", "--epochs", "1", "--set", "batch_size=32", "--out", str(out),
                 "--no-progress", "--device", "cpu", *extra]) == 0
    return out


def tiny_flow(out):
    # A barely trained data target draws one grey image; the velocity target draws distinct ones.
    return tiny("flow", out, "--set", "model_args.width=8", "--set", "model_args.target=velocity")


@contextmanager
def running(app: Flask) -> Iterator[str]:
    """The app on a waitress server on a free port of 127.0.0.1; yields its address."""
    from waitress import create_server

    srv = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.effective_port}"
    finally:
        srv.close()
