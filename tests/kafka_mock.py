"""A Kafka cluster for tests: librdkafka's mock cluster, real protocol on 127.0.0.1.

``MockCluster()`` starts three brokers inside a confluent-kafka producer; the cluster
lives as long as that producer (``close()`` or garbage collection ends it). Measured
limits: auto-created topics have 4 partitions (there is no CreateTopics); a partition
keeps about 5 MiB / 100 k message sets and silently drops older ones (produce compressed,
spread over partitions); group joins take about 3 s (``assign()`` avoids them).
"""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import Producer

__all__ = ["MockCluster"]


class MockCluster:
    """Three mock brokers on 127.0.0.1; ``bootstrap`` is their comma-separated list."""

    def __init__(self, brokers: int = 3) -> None:
        # log_level 3: the brokers' disconnect chatter at shutdown is not worth a line
        self._owner: Producer | None = Producer({"test.mock.num.brokers": brokers, "log_level": 3})
        meta = self._owner.list_topics(timeout=10)
        self.bootstrap = ",".join(
            f"{b.host}:{b.port}" for b in sorted(meta.brokers.values(), key=lambda b: b.id)
        )

    def producer(self, **config: object) -> Producer:
        """A producer on this cluster (zstd by default: the mock keeps ~5 MiB per partition)."""
        conf: dict[str, object] = {
            "bootstrap.servers": self.bootstrap,
            "compression.type": "zstd",
            "linger.ms": 5,
            "log_level": 3,
        }
        conf.update(config)
        return Producer(conf)

    def produce(
        self,
        topic: str,
        values: Iterable[bytes],
        *,
        partitions: int = 4,
        keys: Iterable[bytes] | None = None,
    ) -> int:
        """Produce ``values`` round-robin over ``partitions`` and wait until all are
        acknowledged; returns how many were produced."""
        p = self.producer()
        n = 0
        key_iter = iter(keys) if keys is not None else None
        for value in values:
            key = next(key_iter) if key_iter is not None else None
            while True:
                try:
                    p.produce(topic, value=value, key=key, partition=n % partitions)
                    break
                except BufferError:
                    p.poll(0.05)
            n += 1
        left = p.flush(30)
        if left:
            msg = f"{left} messages to {topic!r} not acknowledged within 30 s"
            raise RuntimeError(msg)
        return n

    def close(self) -> None:
        """Stop the brokers."""
        self._owner = None

    def __enter__(self) -> MockCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
