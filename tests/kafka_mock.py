"""A Kafka cluster for tests: librdkafka's mock cluster, real protocol on 127.0.0.1.

``MockCluster()`` starts three brokers inside a confluent-kafka producer; the cluster
lives as long as that producer (``close()`` or garbage collection ends it). Measured
limits: auto-created topics have 4 partitions (there is no CreateTopics); a partition
keeps about 5 MiB / 100 k message sets and silently drops older ones (produce compressed,
spread over partitions); group joins take about 3 s (``assign()`` avoids them).

Outages: ``broker_down(id)`` / ``broker_up(id)`` and ``outage()`` (all brokers) call
librdkafka's mock API through ctypes (confluent-kafka does not expose it). A broker set
down closes every connection to it and stops accepting new ones (its port stays bound,
so clients get "connection refused"); set up, it listens on the same port again and
keeps its partitions' data. The mock does not fail a partition over to another broker:
while its leader is down it is unreadable. ``leaders(topic)`` says which broker leads
each partition and ``set_leaders(topic, ...)`` chooses (the mock picks at random).
"""

from __future__ import annotations

import ctypes
import glob
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import confluent_kafka
from confluent_kafka import Producer

__all__ = ["MockCluster", "MockLayoutError"]

#: librdkafka's RD_KAFKA_PRODUCER (rd_kafka_type_t)
_RD_KAFKA_PRODUCER = 0


class MockLayoutError(RuntimeError):
    """The ctypes route to librdkafka's mock API does not hold for this confluent-kafka."""


def _librdkafka() -> ctypes.CDLL:
    """The librdkafka that confluent-kafka's wheel bundles and has already loaded.

    ``RTLD_NOLOAD`` makes ``dlopen`` hand back the loaded library or fail: a second copy
    would not share the producer's state."""
    pkg = os.path.dirname(os.path.abspath(confluent_kafka.__file__))
    found = sorted(glob.glob(os.path.join(pkg + ".libs", "librdkafka*.so*")))
    if len(found) != 1:
        msg = (
            f"expected one bundled librdkafka in {pkg}.libs, found {found}: the outage "
            "helpers need confluent-kafka's wheel (its own librdkafka)"
        )
        raise MockLayoutError(msg)
    try:
        lib = ctypes.CDLL(found[0], mode=ctypes.RTLD_GLOBAL | os.RTLD_NOLOAD)
    except OSError as exc:
        msg = f"{found[0]} is not the librdkafka confluent-kafka loaded: {exc}"
        raise MockLayoutError(msg) from exc
    p, i32 = ctypes.c_void_p, ctypes.c_int32
    for name, res, args in (
        ("rd_kafka_type", ctypes.c_int, [p]),
        ("rd_kafka_name", ctypes.c_char_p, [p]),
        ("rd_kafka_handle_mock_cluster", p, [p]),
        ("rd_kafka_mock_broker_set_down", ctypes.c_int, [p, i32]),
        ("rd_kafka_mock_broker_set_up", ctypes.c_int, [p, i32]),
        ("rd_kafka_mock_partition_set_leader", ctypes.c_int, [p, ctypes.c_char_p, i32, i32]),
        ("rd_kafka_err2str", ctypes.c_char_p, [ctypes.c_int]),
    ):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


def _mock_cluster(lib: ctypes.CDLL, producer: Producer) -> int:
    """The ``rd_kafka_mock_cluster_t *`` inside a producer made with ``test.mock.num.brokers``.

    A hack, checked at every step: confluent-kafka's C ``Handle`` struct (the instance
    layout of ``cimpl.Producer``, src/confluent_kafka/src/confluent_kafka.h) is
    ``PyObject_HEAD`` (a refcount and a type pointer on a non-debug build) followed by
    ``rd_kafka_t *rk``, so the pointer sits at ``id(producer) + 2 * sizeof(ssize_t)``
    (read in the 2.1 and 2.2 sources; confirmed at run time for the version installed).
    It is used only once librdkafka itself confirms it: a producer handle, named
    ``rdkafka#producer-N``, that owns a mock cluster. Otherwise :class:`MockLayoutError`
    says the layout changed (the outage tests then fail; they are not skipped). A layout
    changed so much that the word there is a stray non-NULL pointer would crash the
    process at ``rd_kafka_type`` instead: a failure too, just a louder one."""
    changed = "confluent-kafka's Handle layout changed (PyObject_HEAD then rd_kafka_t *rk)"
    head = ctypes.sizeof(ctypes.c_ssize_t) + ctypes.sizeof(ctypes.c_void_p)
    if type(producer) is not Producer or type(producer).__basicsize__ < head + 8:
        msg = f"{changed}: {type(producer)!r} is not the C Producer it was"
        raise MockLayoutError(msg)
    rk = ctypes.c_void_p.from_address(id(producer) + head).value
    if not rk:
        msg = f"{changed}: no rd_kafka_t pointer after PyObject_HEAD"
        raise MockLayoutError(msg)
    kind = lib.rd_kafka_type(rk)
    name = (lib.rd_kafka_name(rk) or b"").decode(errors="replace")
    if kind != _RD_KAFKA_PRODUCER or not name.startswith("rdkafka#producer-"):
        msg = f"{changed}: the pointer gives type {kind}, name {name!r}, not a producer"
        raise MockLayoutError(msg)
    mcluster = lib.rd_kafka_handle_mock_cluster(rk)
    if not mcluster:
        msg = f"{changed}: producer {name!r} owns no mock cluster"
        raise MockLayoutError(msg)
    return int(mcluster)


class MockCluster:
    """Three mock brokers on 127.0.0.1; ``bootstrap`` is their comma-separated list."""

    def __init__(self, brokers: int = 3) -> None:
        # log_level 3: the brokers' disconnect chatter at shutdown is not worth a line
        self._owner: Producer | None = Producer({"test.mock.num.brokers": brokers, "log_level": 3})
        meta = self._owner.list_topics(timeout=10)
        found = sorted(meta.brokers.values(), key=lambda b: b.id)
        self.bootstrap = ",".join(f"{b.host}:{b.port}" for b in found)
        self.broker_ids = [b.id for b in found]
        self._mock: tuple[ctypes.CDLL, int] | None = None  # found on the first outage

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

    def leaders(self, topic: str) -> dict[int, int]:
        """Per partition of ``topic``, the id of the broker that leads it, as the cluster
        says now (the mock never moves a partition to another leader by itself: while
        its broker is down it is unreadable)."""
        meta = self._handle().list_topics(topic, timeout=10)
        return {p: pm.leader for p, pm in sorted(meta.topics[topic].partitions.items())}

    def set_leaders(self, topic: str, leaders: dict[int, int]) -> None:
        """Make broker ``leaders[p]`` the leader of partition ``p`` of ``topic`` (the mock
        picks leaders at random when it creates a topic); clients learn it from their
        next metadata."""
        lib, mcluster = self._mock_api()
        for part, broker_id in leaders.items():
            err = lib.rd_kafka_mock_partition_set_leader(mcluster, topic.encode(), part, broker_id)
            self._check(err, f"making broker {broker_id} the leader of {topic}/{part}")

    # ------------------------------------------------------------------ outages
    def _handle(self) -> Producer:
        if self._owner is None:
            msg = "the mock cluster is closed"
            raise RuntimeError(msg)
        return self._owner

    def _mock_api(self) -> tuple[ctypes.CDLL, int]:
        owner = self._handle()
        if self._mock is None:
            lib = _librdkafka()
            self._mock = lib, _mock_cluster(lib, owner)
        return self._mock

    def _check(self, err: int, what: str) -> None:
        if err:
            lib, _ = self._mock_api()
            why = (lib.rd_kafka_err2str(err) or b"").decode(errors="replace")
            msg = f"{what} failed: {why}"
            raise RuntimeError(msg)

    def _set(self, broker_id: int, up: bool) -> None:
        lib, mcluster = self._mock_api()
        fn = lib.rd_kafka_mock_broker_set_up if up else lib.rd_kafka_mock_broker_set_down
        self._check(
            fn(mcluster, broker_id), f"setting broker {broker_id} {'up' if up else 'down'}"
        )

    def broker_down(self, broker_id: int) -> None:
        """Take one broker down: its connections close and new ones are refused."""
        self._set(broker_id, up=False)

    def broker_up(self, broker_id: int) -> None:
        """Bring a broker back on its port, with the data it had."""
        self._set(broker_id, up=True)

    def all_down(self) -> None:
        """Take every broker down."""
        for b in self.broker_ids:
            self.broker_down(b)

    def all_up(self) -> None:
        """Bring every broker back."""
        for b in self.broker_ids:
            self.broker_up(b)

    @contextmanager
    def outage(self) -> Iterator[None]:
        """Every broker down inside the block, back up on leaving it (error or not)."""
        self.all_down()
        try:
            yield
        finally:
            self.all_up()

    def close(self) -> None:
        """Stop the brokers."""
        self._owner = None

    def __enter__(self) -> MockCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
