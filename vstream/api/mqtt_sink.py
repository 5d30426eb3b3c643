"""``Stream.sink_mqtt``: its own module, so the terminal calls' module stays short
(:class:`vstream.api.sinks.Terminals` inherits it)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal, overload

from vstream._duration import Duration, wall_seconds
from vstream.api.base import StreamBase
from vstream.io.sinks import Sink
from vstream.runtime.checkpointing import CheckpointConfig
from vstream.runtime.metrics import Metrics

if TYPE_CHECKING:
    import ssl

    from vstream.api.sinks import LazySink

__all__ = ["MqttTerminals"]


class MqttTerminals(StreamBase):
    """The MQTT terminal call of a :class:`~vstream.Stream`."""

    @overload
    def sink_mqtt(
        self,
        topic: str,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        qos: int = 1,
        format: Literal["json", "arrow"] = "json",
        client_id: str | None = None,
        protocol: Literal["3.1.1", "5"] = "3.1.1",
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        keepalive: int = 60,
        max_inflight: int = 10_000,
        ack_timeout: Duration | float = "60s",
        lazy: Literal[False] = False,
        timeout: Duration | float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
        progress: bool | None = None,
    ) -> Metrics: ...

    @overload
    def sink_mqtt(
        self,
        topic: str,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        qos: int = 1,
        format: Literal["json", "arrow"] = "json",
        client_id: str | None = None,
        protocol: Literal["3.1.1", "5"] = "3.1.1",
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        keepalive: int = 60,
        max_inflight: int = 10_000,
        ack_timeout: Duration | float = "60s",
        lazy: Literal[True],
        timeout: Duration | float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
        progress: bool | None = None,
    ) -> LazySink: ...

    def sink_mqtt(
        self,
        topic: str,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        qos: int = 1,
        format: Literal["json", "arrow"] = "json",
        client_id: str | None = None,
        protocol: Literal["3.1.1", "5"] = "3.1.1",
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        keepalive: int = 60,
        max_inflight: int = 10_000,
        ack_timeout: Duration | float = "60s",
        lazy: bool = False,
        timeout: Duration | float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
        progress: bool | None = None,
    ) -> Metrics | LazySink:
        """Publish the rows to an MQTT topic: a JSON message per row (``format="json"``),
        or an Arrow IPC stream per batch (``"arrow"``), through paho-mqtt 2.x.

        At ``qos`` 1 or 2 at most ``max_inflight`` messages (paho allows 65,535) wait for
        the broker's acknowledgement; more wait until acknowledgements come, and a
        broker that acknowledges nothing for ``ack_timeout`` fails the run with a
        :class:`~vstream.errors.SinkError`. With ``checkpoint_dir`` (see
        :meth:`sink_parquet`) a checkpoint waits until every message of its epoch is
        acknowledged, so the guarantee is at-least-once: after a restart the rows after
        the last checkpoint are published again. MQTT has no transactions: exactly-once
        is not offered. At QoS 0 a message published while the connection is down is
        lost. Returns the run's metrics, or a :class:`LazySink` with ``lazy=True``.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> s = vs.from_polars(pl.DataFrame({"host": ["a"], "cpu": [0.5]}))
        >>> s.sink_mqtt("alerts/cpu", port=1883, qos=1, lazy=True)
        <vstream.LazySink of 'from_polars(1 rows, batch_size=65536)'>
        >>> s.sink_mqtt("alerts/#")
        Traceback (most recent call last):
        ...
        vstream.errors.PipelineError: sink_mqtt: topic must be a topic name (no wildcards ...
        """
        from vstream.io.mqtt_sink import MqttSink, check_sink_options

        check_sink_options(topic, qos, format, max_inflight, "sink_mqtt")
        wait = wall_seconds(ack_timeout, "sink_mqtt ack_timeout")
        config = CheckpointConfig.parse(
            checkpoint_dir, checkpoint_interval, keep_checkpoints, "sink_mqtt"
        )

        def make() -> Sink:
            return MqttSink(
                topic,
                host=host,
                port=port,
                qos=qos,
                format=format,
                client_id=client_id,
                protocol=protocol,
                username=username,
                password=password,
                tls=tls,
                keepalive=keepalive,
                max_inflight=max_inflight,
                ack_timeout=wait,
            )

        from vstream.api.sinks import LazySink

        sink = LazySink(self, make, checkpoint=config)
        return sink if lazy else sink.run(timeout=timeout, stacklevel=3, progress=progress)
