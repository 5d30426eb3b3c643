"""A real MQTT broker for the tests: mosquitto where it is installed, amqtt elsewhere.

``Broker(tmp_path, variant)`` starts ``mosquitto`` (``shutil.which`` or
``/usr/sbin/mosquitto``) on a free 127.0.0.1 port with its own config file in
``tmp_path``, waits until it accepts connections, and stops it. Variants:

- ``"default"``: mosquitto's default flow control (``max_inflight_messages 20``,
  ``max_queued_messages 1000``, then it drops);
- ``"lossless"``: ``max_queued_messages 0`` (no limit), for tests that need every message;
- ``"persistent"``: lossless, with persistence on disk (sessions survive a restart).

Where mosquitto is not installed (or ``VSTREAM_TEST_BROKER=amqtt``), the same runs
amqtt, a pure-Python broker, in a subprocess (it has no flow-control settings and no
persistence across restarts: the variants are then all lossless). Never skipped.
``restart()`` stops and starts the broker on the same port (the outage test).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["Broker", "broker_kind"]

_AMQTT = """
import asyncio, logging, sys
logging.disable(logging.CRITICAL)
from amqtt.broker import Broker

async def main():
    broker = Broker({
        "listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:" + sys.argv[1]}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    })
    await broker.start()
    await asyncio.Event().wait()

asyncio.run(main())
"""


def broker_kind() -> str:
    """``"mosquitto"`` or ``"amqtt"``: what :class:`Broker` starts on this machine."""
    if os.environ.get("VSTREAM_TEST_BROKER") == "amqtt":
        return "amqtt"
    return "mosquitto" if _mosquitto() else "amqtt"


def _mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """A broker process on ``127.0.0.1:port``; a context manager."""

    def __init__(self, tmp_path: Path, variant: str = "default") -> None:
        assert variant in ("default", "lossless", "persistent"), variant
        self.dir = Path(tmp_path) / f"broker-{variant}-{os.getpid()}-{time.monotonic_ns()}"
        self.dir.mkdir(parents=True)
        self.variant = variant
        self.kind = broker_kind()
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def _config(self) -> Path:
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "log_dest none"]
        if self.variant in ("lossless", "persistent"):
            # no limit; QoS 0 messages are queued for offline persistent sessions too
            lines += ["max_queued_messages 0", "queue_qos0_messages true"]
        if self.variant == "persistent":
            lines += ["persistence true", f"persistence_location {self.dir}/"]
        path = self.dir / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> None:
        if self.kind == "mosquitto":
            exe = _mosquitto()
            assert exe is not None
            cmd = [exe, "-c", str(self._config())]
        else:
            cmd = [sys.executable, "-c", _AMQTT, str(self.port)]
        log = open(self.dir / "broker.log", "ab")  # noqa: SIM115 - the process holds it
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                text = (self.dir / "broker.log").read_text(errors="replace")
                msg = f"the {self.kind} broker exited with {self.proc.returncode}: {text[-2000:]}"
                raise RuntimeError(msg)
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    msg = f"the {self.kind} broker did not listen on {self.port} within 30 s"
                    raise RuntimeError(msg) from None
                time.sleep(0.05)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # mosquitto saves its persistence on SIGTERM
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def restart(self, down: float = 0.0) -> None:
        """Stop, stay down ``down`` seconds, start again on the same port."""
        self.stop()
        time.sleep(down)
        self.start()

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
