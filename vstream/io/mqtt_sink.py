"""MQTT as a sink: one message per row (JSON) or per batch (Arrow IPC), through paho-mqtt.

paho refuses more than 65,535 unacknowledged QoS>0 messages (its packet ids are 16-bit),
so the sink bounds them: once ``max_inflight`` publishes wait for their acknowledgement,
``write`` waits for acknowledgements before publishing more. A checkpoint waits until
every message of its epoch is acknowledged: with a checkpoint the guarantee is
at-least-once (a restart publishes the rows after the last checkpoint again); without
one, rows published before a crash may be lost. At QoS 0 nothing is acknowledged: a
message published while the connection is down is lost (at-most-once).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Literal

import polars as pl
import pyarrow as pa

from vstream.errors import PipelineError, SinkError
from vstream.io.sinks import Sink

if TYPE_CHECKING:
    import ssl

    from paho.mqtt.client import Client

__all__ = ["MqttSink"]


class MqttSink(Sink):
    """Publishes a branch's rows to ``topic``; built by :meth:`vstream.Stream.sink_mqtt`,
    which documents the parameters."""

    def __init__(
        self,
        topic: str,
        *,
        host: str,
        port: int,
        qos: int,
        format: Literal["json", "arrow"],
        client_id: str | None,
        protocol: Literal["3.1.1", "5"],
        username: str | None,
        password: str | None,
        tls: ssl.SSLContext | None,
        keepalive: int,
        max_inflight: int,
        ack_timeout: float,
    ) -> None:
        self.topic = topic
        self.host, self.port, self.qos = host, port, qos
        self.format = format
        self.client_id = client_id
        self.protocol = protocol
        self.username, self.password, self.tls = username, password, tls
        self.keepalive = keepalive
        self.max_inflight = max_inflight
        self.ack_timeout = ack_timeout
        self.label = f"sink_mqtt({topic!r} at {host}:{port})"
        self._cond = threading.Condition()
        self._outstanding = 0
        self._connected = False
        self._refused: str | None = None
        self._client: Client | None = None
        #: messages published and acknowledged (QoS>0) or sent (QoS 0)
        self.published = 0

    # ------------------------------------------------------------------ lifecycle
    def open(self, schema: pl.Schema) -> None:
        super().open(schema)
        from vstream.io.mqtt import paho

        mqtt = paho()
        v5 = self.protocol == "5"
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id or f"vstream-sink-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        )
        # our own bound keeps the packet ids unique; paho's (20 in flight, the rest
        # queued) scans every queued message on each acknowledgement: 70,000 messages
        # took 78 s through it, against a few seconds with paho's limit off
        client.max_inflight_messages_set(0)
        client.reconnect_delay_set(1, 10)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls is not None:
            client.tls_set_context(self.tls)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        try:
            client.connect(self.host, self.port, self.keepalive)
        except (OSError, ValueError) as exc:
            msg = (
                f"{self.label}: cannot connect to the broker ({exc}); check host= and port= "
                "and that the broker runs"
            )
            raise SinkError(msg) from exc
        client.loop_start()
        self._client = client
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._connected or self._refused is not None, self.ack_timeout
            )
        if not ok or self._refused is not None:
            self._shutdown()
            why = self._refused or f"no answer within {self.ack_timeout:g} s"
            msg = f"{self.label}: the broker did not accept the connection: {why}"
            raise SinkError(msg)

    def write(self, df: pl.DataFrame) -> None:
        if not df.height:
            return
        if self.format == "json":
            text = df.write_ndjson().encode("utf-8")
            payloads = text.split(b"\n")[: df.height]
        else:
            sink = pa.BufferOutputStream()
            table = df.to_arrow()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            payloads = [sink.getvalue().to_pybytes()]
        self._publish_all(payloads)

    def _publish_all(self, payloads: list[bytes]) -> None:
        client = self._client
        assert client is not None
        publish, topic, qos = client.publish, self.topic, self.qos
        if qos == 0:
            for p in payloads:
                publish(topic, p, 0)
            self.published += len(payloads)
            return
        bound = self.max_inflight
        k = 0
        while k < len(payloads):
            with self._cond:
                room = bound - self._outstanding
                if room <= 0:
                    self._wait(lambda: self._outstanding < bound, "publish more")
                    continue
                self._outstanding += min(room, len(payloads) - k)
            for p in payloads[k : k + room]:
                info = publish(topic, p, qos)
                if info.rc not in (0, 4):  # 4: not connected now, queued and resent
                    msg = f"{self.label}: paho refused a message (error {info.rc})"
                    raise SinkError(msg)
            k += room

    def _wait(self, done: Any, what: str) -> None:
        """Wait (holding the condition) for acknowledgements; a SinkError after
        ``ack_timeout`` without progress."""
        last = self._outstanding
        deadline = time.monotonic() + self.ack_timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                msg = (
                    f"{self.label}: {self._outstanding} messages wait for the broker's "
                    f"acknowledgement and none came in {self.ack_timeout:g} s (connected: "
                    f"{self._connected}); cannot {what}. Check the broker"
                )
                raise SinkError(msg)
            self._cond.wait(min(left, 0.5))
            if self._outstanding != last:
                last = self._outstanding
                deadline = time.monotonic() + self.ack_timeout

    def flush(self) -> None:
        """Wait until every published QoS>0 message is acknowledged."""
        with self._cond:
            self._wait(lambda: self._outstanding == 0, "finish the epoch")

    def precommit(self, epoch: int) -> dict[str, Any]:
        self.flush()  # a checkpoint implies its epoch's messages reached the broker
        return {}

    def close(self) -> None:
        if self._client is None:
            return
        try:
            if self._connected or self._outstanding:
                self.flush()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    # ------------------------------------------------------------------ callbacks
    def _on_connect(
        self, client: Client, userdata: object, flags: object, reason: Any, properties: object
    ) -> None:
        with self._cond:
            if getattr(reason, "is_failure", False):
                self._refused = str(reason)
            else:
                self._connected = True
            self._cond.notify_all()

    def _on_disconnect(
        self, client: Client, userdata: object, flags: object, reason: Any, properties: object
    ) -> None:
        with self._cond:
            self._connected = False
            self._cond.notify_all()

    def _on_publish(
        self, client: Client, userdata: object, mid: int, reason: Any, properties: object
    ) -> None:
        if self.qos == 0:
            return
        with self._cond:
            self._outstanding -= 1
            self.published += 1
            if self._outstanding < self.max_inflight:
                self._cond.notify_all()


def check_sink_options(
    topic: object, qos: object, format: object, max_inflight: object, where: str
) -> None:
    """Refuse bad sink_mqtt options when the pipeline is built."""
    if not isinstance(topic, str) or not topic or "+" in topic or "#" in topic or "\x00" in topic:
        msg = f"{where}: topic must be a topic name (no wildcards '+' or '#'), got {topic!r}"
        raise PipelineError(msg)
    if qos not in (0, 1, 2) or isinstance(qos, bool):
        msg = f"{where}: qos must be 0, 1 or 2, got {qos!r}"
        raise PipelineError(msg)
    if format not in ("json", "arrow"):
        msg = f"{where}: format must be 'json' (a message per row) or 'arrow' (per batch)"
        raise PipelineError(msg)
    if (
        isinstance(max_inflight, bool)
        or not isinstance(max_inflight, int)
        or not 1 <= max_inflight <= 65_535
    ):
        msg = (
            f"{where}: max_inflight must be an int from 1 to 65,535 (paho's packet ids are "
            f"16-bit), got {max_inflight!r}"
        )
        raise PipelineError(msg)
