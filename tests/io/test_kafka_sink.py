"""``stream.sink_kafka`` against librdkafka's mock cluster (real protocol on 127.0.0.1).

What is produced is read back with a plain confluent-kafka ``Consumer`` (``assign()``
from the low watermark of every partition to its high one). The kill tests run the
pipeline as a child process (this file run as a script, see :func:`_child`), kill it
with SIGKILL at a chosen point (after a checkpoint is durable but before its epoch is
produced; in the middle of producing an epoch) or at random moments, restart it with the
same ``checkpoint_dir``, and check that every row arrives and that the only duplicates
are messages whose (``vstream-epoch``, ``vstream-seq``) pair repeats.
"""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import time
import uuid
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

import vstream as vs
from kafka_mock import MockCluster
from vstream.io.kafka_sink import KafkaSink

#: the checkout whose vstream the child processes import (the one under test)
PACKAGE_ROOT = Path(vs.__file__).resolve().parent.parent
#: the tests root, whose helper modules (kafka_mock) the child processes import
TESTS_ROOT = Path(__file__).resolve().parents[1]
#: patience for anything that should take seconds
PATIENCE_S = 60.0


@pytest.fixture(scope="module")
def cluster() -> Any:
    with MockCluster() as c:
        yield c


def _topic() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def read_topic(cluster: MockCluster, topic: str) -> list[tuple[bytes | None, bytes, int, int]]:
    """Every message of ``topic``: (key, value, epoch header, seq header), by partition
    and offset."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "group.id": "reader",
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10)
        wanted, assign = 0, []
        for p in sorted(meta.topics[topic].partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            wanted += high - low
            assign.append(TopicPartition(topic, p, low))
        consumer.assign(assign)
        out = []
        deadline = time.monotonic() + PATIENCE_S
        while len(out) < wanted and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, timeout=0.5):
                assert msg.error() is None, msg.error()
                headers = dict(msg.headers() or [])
                out.append(
                    (
                        msg.key(),
                        msg.value(),
                        int(headers["vstream-epoch"]),
                        int(headers["vstream-seq"]),
                    )
                )
        assert len(out) == wanted
        return out
    finally:
        consumer.close()


def rows_of(messages: list[tuple[bytes | None, bytes, int, int]]) -> pl.DataFrame:
    """The JSON values of ``messages`` as one frame."""
    return pl.read_ndjson(io.BytesIO(b"\n".join(m[1] for m in messages)))


def telemetry(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": pl.int_range(n, eager=True),
            "host": [f"host-{i % 7}" for i in range(n)],
            "cpu": [i / 8 for i in range(n)],
        }
    )


# ====================================================================== formats


def test_json_with_key_delivers_every_row_once(cluster: MockCluster) -> None:
    topic = _topic()
    df = telemetry(1_000)
    vs.from_polars(df, batch_size=128).sink_kafka(
        topic, bootstrap_servers=cluster.bootstrap, key="host", linger_ms=1
    )
    got = read_topic(cluster, topic)
    assert len(got) == df.height
    assert_frame_equal(rows_of(got).sort("id"), df)
    # each message's key is its row's host
    assert [k.decode() for k, *_ in got if k is not None] == rows_of(got)["host"].to_list()
    # without checkpoints: epoch 0, one sequence over the run
    assert {e for *_, e, _ in got} == {0}
    assert sorted(s for *_, s in got) == list(range(df.height))


def test_json_dtypes_round_trip(cluster: MockCluster) -> None:
    topic = _topic()
    df = pl.DataFrame(
        {
            "s": ['quote " newline \n tab \t', "é ✓", None],
            "i": [1, None, -(2**62)],
            "b": [True, False, None],
            "lst": [[1, 2], [], None],
            "st": [{"a": 1}, {"a": None}, None],
        }
    )
    vs.from_polars(df).sink_kafka(topic, bootstrap_servers=cluster.bootstrap)
    got = read_topic(cluster, topic)
    back = pl.read_ndjson(io.BytesIO(b"\n".join(m[1] for m in sorted(got, key=lambda m: m[3]))))
    assert_frame_equal(back, df)


def test_raw_string_and_binary(cluster: MockCluster) -> None:
    for values, dtype in (
        ([b"\x00\xff", b"", b"x" * 100], pl.Binary),
        (["a", "é", ""], pl.String),
    ):
        topic = _topic()
        df = pl.DataFrame({"payload": pl.Series(values, dtype=dtype), "k": [1, 2, 3]})
        vs.from_polars(df).sink_kafka(
            topic, bootstrap_servers=cluster.bootstrap, format="raw", value="payload", key="k"
        )
        got = sorted(read_topic(cluster, topic), key=lambda m: m[3])
        want = [v if isinstance(v, bytes) else v.encode() for v in values]
        assert [m[1] for m in got] == want
        assert [m[0] for m in got] == [b"1", b"2", b"3"]


def test_arrow_messages_hold_rows_per_message(cluster: MockCluster) -> None:
    topic = _topic()
    df = telemetry(2_500)
    vs.from_polars(df, batch_size=1_000).sink_kafka(
        topic, bootstrap_servers=cluster.bootstrap, format="arrow", rows_per_message=400
    )
    got = sorted(read_topic(cluster, topic), key=lambda m: m[3])
    tables = [pa.ipc.open_stream(m[1]).read_all() for m in got]
    # each batch of 1000 rows becomes messages of 400, 400, 200 rows
    assert [t.num_rows for t in tables] == [400, 400, 200, 400, 400, 200, 400, 100]
    assert_frame_equal(pl.concat([pl.from_arrow(t) for t in tables]), df)  # type: ignore[misc]


# ====================================================================== checkpoints


def test_checkpointed_run_stages_produces_and_marks_delivered(
    cluster: MockCluster, tmp_path: Path
) -> None:
    topic = _topic()
    df = telemetry(1_000)
    ckpt = tmp_path / "ckpt"
    vs.from_polars(df, batch_size=100).sink_kafka(
        topic, bootstrap_servers=cluster.bootstrap, checkpoint_dir=ckpt, checkpoint_interval=3
    )
    got = read_topic(cluster, topic)
    assert_frame_equal(rows_of(got).sort("id"), df)
    pairs = [(e, s) for *_, e, s in got]
    assert len(set(pairs)) == len(pairs)
    by_epoch = Counter(e for e, _ in pairs)
    # 10 batches, a checkpoint every 3: epochs of 300, 300, 300 and a final one of 100
    assert dict(by_epoch) == {1: 300, 2: 300, 3: 300, 4: 100}
    for epoch, n in by_epoch.items():  # each epoch numbers its messages from 0
        assert sorted(s for e, s in pairs if e == epoch) == list(range(n))
    # every epoch acknowledged: nothing left staged
    assert list((ckpt / "kafka-sink-0").iterdir()) == []


def _staged_sink(cluster: MockCluster, topic: str, ckpt: Path) -> KafkaSink:
    sink = KafkaSink(topic, bootstrap_servers=cluster.bootstrap, config={"log_level": 3})
    sink.use_checkpoints(ckpt, 0)
    sink.open(telemetry(0).schema)
    return sink


def test_recover_produces_covered_epochs_and_drops_later_ones(
    cluster: MockCluster, tmp_path: Path
) -> None:
    topic = _topic()
    sink = _staged_sink(cluster, topic, tmp_path)
    sink.recover(0, None)
    sink.write(telemetry(5))
    assert sink.precommit(1) == {}
    # a crash here: epoch 1's checkpoint was written, its messages were never produced;
    # then epoch 2 staged without a checkpoint covering it
    sink.epoch = 2
    sink.write(telemetry(3))
    sink.precommit(2)
    staged = sorted(p.name for p in (tmp_path / "kafka-sink-0").iterdir())
    assert [n[:14] for n in staged] == ["epoch-00000001", "epoch-00000002"]
    sink._producer = None  # killed: no flush

    again = _staged_sink(cluster, topic, tmp_path)
    again.recover(1, {})
    assert again.epoch == 2
    again.close()
    got = read_topic(cluster, topic)
    assert sorted((e, s) for *_, e, s in got) == [(1, s) for s in range(5)]
    assert_frame_equal(rows_of(got).sort("id"), telemetry(5))
    assert list((tmp_path / "kafka-sink-0").iterdir()) == []


@pytest.mark.parametrize("damage", ["flip", "truncate", "symlink"])
def test_damaged_staged_epoch_is_refused(
    cluster: MockCluster, tmp_path: Path, damage: str
) -> None:
    sink = _staged_sink(cluster, _topic(), tmp_path)
    sink.recover(0, None)
    sink.write(telemetry(50))
    sink.precommit(1)
    sink.close()
    (path,) = (tmp_path / "kafka-sink-0").iterdir()
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(bytes(data[:-40]))
    else:
        elsewhere = tmp_path / "elsewhere.arrow"
        path.rename(elsewhere)
        path.symlink_to(elsewhere)
    again = _staged_sink(cluster, _topic(), tmp_path)
    with pytest.raises(vs.CheckpointError, match="epoch 1") as info:
        again.recover(1, {})
    assert "restore the file, or delete it" in str(info.value)
    again.close()


def test_unreachable_broker_fails_loudly_and_a_rerun_delivers(
    cluster: MockCluster, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    topic, ckpt = _topic(), tmp_path / "ckpt"
    stream = vs.from_polars(telemetry(200), batch_size=50)
    with pytest.raises(vs.SinkError, match="did not take messages") as info:
        stream.sink_kafka(
            topic,
            bootstrap_servers=dead,
            checkpoint_dir=ckpt,
            checkpoint_interval=2,
            message_timeout_ms=300,
            log_level=0,
        )
    assert "same checkpoint_dir" in str(info.value)
    # staged, not delivered (epochs 1 and 2 of 2 batches each, or fewer if the
    # delivery failures surfaced before the run ended)
    assert 1 <= len(list((ckpt / "kafka-sink-0").iterdir())) <= 2
    # the rerun produces the staged epochs again (and computes the rest, if any: when the
    # first run finished, it warns that there is nothing to do)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "the run checkpointed", vs.CheckpointWarning)
        stream.sink_kafka(
            topic, bootstrap_servers=cluster.bootstrap, checkpoint_dir=ckpt, checkpoint_interval=2
        )
    got = read_topic(cluster, topic)
    assert_frame_equal(rows_of(got).sort("id"), telemetry(200))
    assert list((ckpt / "kafka-sink-0").iterdir()) == []


def test_unreachable_broker_without_checkpoints(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(vs.SinkError, match="not in the topic"):
        vs.from_polars(telemetry(10)).sink_kafka(
            "t", bootstrap_servers=dead, message_timeout_ms=300, log_level=0
        )


# ====================================================================== refusals


def test_oversized_row_is_refused_before_it_is_staged(
    cluster: MockCluster, tmp_path: Path
) -> None:
    df = pl.DataFrame({"id": [1, 2], "blob": ["x", "y" * 5_000]})
    ckpt = tmp_path / "ckpt"
    with pytest.raises(vs.SinkError, match=r"5\d\d\d bytes .*message\.max\.bytes=4000"):
        vs.from_polars(df).sink_kafka(
            _topic(),
            bootstrap_servers=cluster.bootstrap,
            checkpoint_dir=ckpt,
            message_max_bytes=4_000,
        )
    assert [p for p in (ckpt / "kafka-sink-0").iterdir() if p.suffix == ".arrow"] == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"topic": "bad topic"}, vs.PipelineError, "the topic must be"),
        ({"key": "nope"}, vs.ColumnNotFoundError, "key='nope' is not a column"),
        ({"format": "avro"}, vs.PipelineError, "format must be one of"),
        ({"format": "arrow", "key": "host"}, vs.PipelineError, "no row's key"),
        ({"format": "raw"}, vs.PipelineError, "name it with value="),
        ({"format": "raw", "value": "cpu"}, vs.PipelineError, "Binary or String column"),
        ({"value": "host"}, vs.PipelineError, "value= names the column of format='raw'"),
        ({"key": "tags"}, vs.PipelineError, "a key is sent as text"),
        ({"enable_idempotence": False}, vs.PipelineError, "enable.idempotence=False"),
        ({"transactional.id": "x"}, vs.PipelineError, "transactions are not used"),
        ({"error_cb": print}, vs.PipelineError, "set by the sink itself"),
        ({"rows_per_message": 0}, vs.PipelineError, "rows_per_message must be"),
        ({"bootstrap_servers": ""}, vs.PipelineError, "bootstrap_servers must be"),
    ],
)
def test_refused_when_built(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    df = pl.DataFrame({"host": ["a"], "cpu": [1.0], "tags": [["x"]]})
    args: dict[str, Any] = {"topic": "alerts", "bootstrap_servers": "127.0.0.1:1", **kwargs}
    with pytest.raises(error, match=match):
        vs.from_polars(df).sink_kafka(args.pop("topic"), lazy=True, **args)


def test_binary_column_refused_for_json() -> None:
    df = pl.DataFrame({"blob": [b"\x00"]})
    with pytest.raises(vs.PipelineError, match="binary column 'blob'"):
        vs.from_polars(df).sink_kafka("t", bootstrap_servers="127.0.0.1:1", lazy=True)


def test_bad_librdkafka_setting_is_a_sink_error() -> None:
    with pytest.raises(vs.SinkError, match="configuration is refused"):
        vs.from_polars(telemetry(1)).sink_kafka(
            "t", bootstrap_servers="127.0.0.1:1", no_such_setting=1
        )


# ====================================================================== kills


def _child(argv: list[str]) -> None:
    """The killed pipeline: ``BOOTSTRAP DATA CKPT TOPIC KILL THROTTLE``. ``KILL`` is
    ``commit:E`` (SIGKILL once the checkpoint of epoch E is durable, before its messages
    are produced), ``produce:E`` (in the middle of producing epoch E: half its messages
    produced and acknowledged) or ``none``."""
    bootstrap, data, ckpt, topic, kill, throttle = argv
    import vstream.io.kafka_sink as ks

    what, _, at = kill.partition(":")
    if what == "commit":
        commit = ks.KafkaSink.commit

        def commit_then_die(self: ks.KafkaSink, epoch: int, state: dict[str, Any]) -> None:
            if epoch == int(at):
                os.kill(os.getpid(), signal.SIGKILL)
            commit(self, epoch, state)

        ks.KafkaSink.commit = commit_then_die  # type: ignore[method-assign]
    elif what == "produce":
        produce = ks.KafkaSink._produce

        def half_then_die(self: ks.KafkaSink, table: pa.Table, epoch: int, first: int) -> None:
            if epoch == int(at):
                produce(self, table.slice(0, table.num_rows // 2), epoch, first)
                assert self._producer.flush(30) == 0
                os.kill(os.getpid(), signal.SIGKILL)
            produce(self, table, epoch, first)

        ks.KafkaSink._produce = half_then_die  # type: ignore[method-assign]

    def slow(df: pl.DataFrame) -> pl.DataFrame:
        time.sleep(float(throttle))
        return df

    stream = vs.from_parquet(data, batch_size=50).map_batches(slow, name="throttle")
    print("ready", flush=True)
    stream.sink_kafka(
        topic, bootstrap_servers=bootstrap, key="host", checkpoint_dir=ckpt, checkpoint_interval=2
    )
    print("done", flush=True)


def _spawn(cluster: MockCluster, data: Path, ckpt: Path, topic: str, kill: str, throttle: float):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE_ROOT), str(TESTS_ROOT)])}
    env.setdefault("NUMBA_CACHE_DIR", str(PACKAGE_ROOT / ".numba-cache"))
    args = [cluster.bootstrap, str(data), str(ckpt), topic, kill, str(throttle)]
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _check_delivery(cluster: MockCluster, topic: str, df: pl.DataFrame) -> Counter[int]:
    """Every row arrived; a row arrived twice only under a repeated (epoch, seq) pair,
    which always carries the same message. Returns how often each pair was seen."""
    got = read_topic(cluster, topic)
    by_pair: dict[tuple[int, int], set[tuple[bytes | None, bytes]]] = {}
    for key, value, epoch, seq in got:
        by_pair.setdefault((epoch, seq), set()).add((key, value))
    assert all(len(v) == 1 for v in by_pair.values()), "a pair carried two messages"
    unique = [next(iter(v)) for v in by_pair.values()]
    back = pl.read_ndjson(io.BytesIO(b"\n".join(v for _, v in unique))).sort("id")
    assert_frame_equal(back, df)  # every row, and once per pair
    seen = Counter((e, s) for *_, e, s in got)
    return Counter(seen.values())


@pytest.mark.slow
def test_kill_between_checkpoint_and_produce_and_during_produce(
    cluster: MockCluster, tmp_path: Path
) -> None:
    df = telemetry(1_000)  # 20 batches of 50, a checkpoint every 2: 10 epochs
    data = tmp_path / "data.parquet"
    df.write_parquet(data)
    topic, ckpt = _topic(), tmp_path / "ckpt"
    # epoch 3 checkpointed, never produced; then killed while the restart produces it
    # again (half of it acknowledged); then killed producing epoch 6 (from commit)
    for kill in ("commit:3", "produce:3", "produce:6", "commit:10", "none"):
        proc = _spawn(cluster, data, ckpt, topic, kill, 0.0)
        out, err = proc.communicate(timeout=PATIENCE_S)
        if kill == "none":
            assert proc.returncode == 0, err
            assert "done" in out
        else:
            assert proc.returncode == -signal.SIGKILL, (kill, err)
    counts = _check_delivery(cluster, topic, df)
    # the halves acknowledged before the kills in produce:3 and produce:6 came again
    assert counts[2] >= 25 + 25, counts
    assert list((ckpt / "kafka-sink-0").iterdir()) == []


@pytest.mark.slow
def test_random_kills(cluster: MockCluster, tmp_path: Path) -> None:
    """Kills at random moments (mostly in an epoch's batches), then a run to the end."""
    rng = random.Random(int(os.environ.get("VSTREAM_CRASH_SEED", "18")))
    df = telemetry(1_000)
    data = tmp_path / "data.parquet"
    df.write_parquet(data)
    topic, ckpt = _topic(), tmp_path / "ckpt"
    kills = 0
    for _ in range(10):
        proc = _spawn(cluster, data, ckpt, topic, "none", 0.01)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        if kills < 3:
            # a run takes ~20 batches of 10 ms after "ready": kill somewhere in it
            time.sleep(rng.uniform(0.0, 0.25))
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=PATIENCE_S)
            kills += 1
            continue
        out, err = proc.communicate(timeout=PATIENCE_S)
        assert proc.returncode == 0, err
        assert "done" in out
        break
    _check_delivery(cluster, topic, df)


if __name__ == "__main__":
    _child(sys.argv[1:])
