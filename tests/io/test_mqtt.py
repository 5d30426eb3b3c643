"""from_mqtt and sink_mqtt against a real broker (mosquitto, or amqtt where it is missing)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import polars as pl
import pyarrow as pa
import pytest

import vstream as vs
from mqtt_broker import Broker
from vstream.errors import SourceError
from vstream.io.mqtt_wal import WAL_SCHEMA, WriteAheadLog

SCHEMA = {"id": pl.Int64, "host": pl.String, "cpu": pl.Float64}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path, "lossless") as b:
        yield b


def publisher(b: Broker, client_id: str = "") -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.max_inflight_messages_set(0)  # no limit: bursts
    c.connect(b.host, b.port)
    c.loop_start()
    return c


def publish(c: mqtt.Client, payloads: list[bytes], topic: str = "tele/a", qos: int = 1) -> None:
    infos = [c.publish(topic, p, qos) for p in payloads]
    for info in infos:
        info.wait_for_publish(30)


def rows(ids: range) -> list[bytes]:
    return [json.dumps({"id": i, "host": f"h{i % 3}", "cpu": i / 2}).encode() for i in ids]


def wait_for(cond: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def subscribed(b: Broker, client_id: str, topic: str = "tele/#") -> None:
    """Create a persistent session on the broker, so messages published before the job
    connects are kept for it (what a restarted job relies on)."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    done = threading.Event()
    c.on_subscribe = lambda *a: done.set()
    c.connect(b.host, b.port)
    c.loop_start()
    c.subscribe(topic, 1)
    assert done.wait(10)
    c.disconnect()
    c.loop_stop()


class Collected:
    """Rows and dead letters of a background job, kept by callback sinks."""

    def __init__(self, stream: vs.Stream, checkpoint_dir: Path | None = None) -> None:
        self.frames: list[pl.DataFrame] = []
        self.dead: list[pl.DataFrame] = []
        self.lock = threading.Lock()

        def keep(into: list[pl.DataFrame]) -> Callable[..., None]:
            def fn(df: pl.DataFrame, epoch: int = 0) -> None:
                with self.lock:
                    into.append(df)

            return fn

        self.job = vs.start_all(
            [
                stream.sink_callback(keep(self.frames), lazy=True),
                stream.dead_letters().sink_callback(keep(self.dead), lazy=True),
            ],
            checkpoint_dir=checkpoint_dir,
            checkpoint_interval="100ms",
        )

    def rows(self) -> pl.DataFrame:
        with self.lock:
            return pl.concat(self.frames) if self.frames else pl.DataFrame()

    def dead_letters(self) -> pl.DataFrame:
        with self.lock:
            return pl.concat(self.dead) if self.dead else pl.DataFrame()

    def height(self) -> int:
        with self.lock:
            return sum(f.height for f in self.frames)


def connected(job: vs.Job) -> None:
    """Wait until the job's MQTT source is subscribed (its reader has connected)."""
    src = next(iter(job._executor.graph.source_of.values()))
    wait_for(
        lambda: src.current_reader is not None and src.current_reader.connected, what="connect"
    )
    time.sleep(0.2)  # the SUBACK follows the CONNACK


# ---------------------------------------------------------------------- formats, bad input
def test_json_with_bad_messages_to_dead_letters(broker: Broker) -> None:
    s = vs.from_mqtt(
        "tele/#",
        port=broker.port,
        qos=1,
        schema=SCHEMA,
        columns_from_mqtt=["topic", "qos", "retain", "timestamp"],
        max_message_bytes=200,
    )
    got = Collected(s)
    connected(got.job)
    pub = publisher(broker)
    t0 = time.time()
    good = rows(range(50))
    bad = {
        "tele/bad/json": b'{"id": 1, "host": ',
        "tele/bad/type": b'{"id": "seven", "host": "a", "cpu": 1}',
        "tele/bad/utf8": b'{"id": 2, "host": "\xff\xfe"}',
        "tele/bad/empty": b"",
        "tele/bad/array": b"[1, 2]",
        "tele/bad/big": json.dumps({"id": 3, "host": "x" * 300}).encode(),
    }
    publish(pub, good[:25])
    for topic, payload in bad.items():
        publish(pub, [payload], topic)
    publish(pub, [b'{"id": 25,\n "host": "h1", "cpu": 12.5}'])  # pretty-printed JSON is fine
    publish(pub, good[26:])
    wait_for(lambda: got.height() == 50 and got.dead_letters().height == 6, what="all messages")
    got.job.stop()
    out = got.rows().sort("id")
    assert out["id"].to_list() == list(range(50))
    assert out.schema["timestamp"] == pl.Datetime("ms", "UTC")
    assert set(out["topic"]) == {"tele/a"}
    assert set(out["qos"]) == {1}
    assert not out["retain"].any()
    assert out["timestamp"].dt.epoch("ms").min() >= int(t0 * 1000) - 1000
    dead = got.dead_letters()
    reasons = dict(zip([r.split("'")[1] for r in dead["reason"]], dead["reason"], strict=True))
    assert set(reasons) == set(bad)
    assert "column 'id'" in reasons["tele/bad/type"]
    assert "column 'host'" in reasons["tele/bad/utf8"]
    assert "UTF-8" in reasons["tele/bad/utf8"]
    assert "empty payload" in reasons["tele/bad/empty"]
    assert "max_message_bytes=200" in reasons["tele/bad/big"]
    assert "not a JSON object" in reasons["tele/bad/array"]
    assert all("mid " in r for r in dead["reason"])
    assert got.job.metrics.dead_letters == 6


def test_arrow_and_raw_formats(broker: Broker) -> None:
    arrow = vs.from_mqtt("tele/arrow", port=broker.port, format="arrow", schema=SCHEMA)
    raw = vs.from_mqtt(
        "tele/raw", port=broker.port, qos=0, format="raw", columns_from_mqtt=["qos"]
    )
    a, r = Collected(arrow), Collected(raw)
    connected(a.job)
    connected(r.job)
    pub = publisher(broker)

    def ipc(df: pl.DataFrame) -> bytes:
        sink = pa.BufferOutputStream()
        table = df.to_arrow()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        return sink.getvalue().to_pybytes()

    frame = pl.DataFrame({"id": range(100), "host": ["h"] * 100, "cpu": [0.5] * 100})
    # a message holds any number of rows; int32 ids are cast to the schema's Int64
    publish(
        pub,
        [ipc(frame[:60]), b"not arrow", ipc(frame[60:].with_columns(pl.col("id").cast(pl.Int32)))],
        "tele/arrow",
    )
    publish(pub, [ipc(frame.drop("host"))], "tele/arrow")
    publish(pub, [b"\x00\xffbytes", b""], "tele/raw", qos=0)
    wait_for(lambda: a.height() == 100 and a.dead_letters().height == 2, what="arrow rows")
    wait_for(lambda: r.height() == 2, what="raw rows")
    a.job.stop()
    r.job.stop()
    assert a.rows().sort("id").equals(frame)
    reasons = a.dead_letters()["reason"].to_list()
    assert any("not an Arrow IPC stream" in x for x in reasons)
    assert any("column 'host' is missing" in x for x in reasons)
    out = r.rows()
    assert out["payload"].to_list() == [b"\x00\xffbytes", b""]
    assert out["qos"].to_list() == [0, 0]


@pytest.mark.parametrize("qos", [0, 1])
def test_qos_levels_without_checkpoint(broker: Broker, qos: int) -> None:
    got = Collected(vs.from_mqtt("tele/#", port=broker.port, qos=qos, schema=SCHEMA))
    connected(got.job)
    publish(publisher(broker), rows(range(2_000)), qos=qos)
    wait_for(lambda: got.height() == 2_000, what="2,000 rows")
    got.job.stop()
    assert sorted(got.rows()["id"]) == list(range(2_000))


def test_options_refused() -> None:
    with pytest.raises(vs.PipelineError, match="not an MQTT topic filter"):
        vs.from_mqtt("tele/#/x", schema=SCHEMA)
    with pytest.raises(vs.PipelineError, match="needs schema"):
        vs.from_mqtt("tele/#")
    with pytest.raises(vs.PipelineError, match="clash"):
        vs.from_mqtt("t", schema={"topic": pl.String}, columns_from_mqtt=["topic"])
    with pytest.raises(vs.PipelineError, match="client_id"):
        vs.from_mqtt("t", schema=SCHEMA, clean_session=False)
    with pytest.raises(vs.PipelineError, match="max_inflight"):
        vs.from_polars(pl.DataFrame({"a": [1]})).sink_mqtt("t", max_inflight=70_000)


def test_status_reports_connection_and_outage(tmp_path: Path) -> None:
    with Broker(tmp_path, "lossless") as b:
        s = vs.from_mqtt("tele/#", port=b.port, schema=SCHEMA, reconnect_delay=(0.1, 0.5))
        got = Collected(s)
        connected(got.job)
        reader = next(iter(got.job._executor._readers.values()))
        st = reader.status()
        assert st.connected
        assert st.errors == 0
        assert st.splits[0].connected
        b.stop()
        wait_for(lambda: not reader.status().connected, what="the outage to show")
        assert not reader.status().splits[0].caught_up  # a disconnected split is never idle
        time.sleep(1.0)
        assert reader.status().errors >= 2  # failed attempts are counted, with backoff
        b.start()
        wait_for(lambda: reader.status().connected, what="reconnection")
        time.sleep(0.3)
        publish(publisher(b), rows(range(10)))
        wait_for(lambda: got.height() == 10, what="rows after the outage")
        got.job.stop()


# ---------------------------------------------------------------------- the write-ahead log
def test_burst_over_default_flow_control_is_not_lost(tmp_path: Path) -> None:
    """mosquitto's defaults: 20 unacknowledged QoS 1 messages in flight per client, then
    a queue of 1,000, then drops. Holding acks until a checkpoint would lose a burst of
    600; logging and acknowledging each micro-batch loses nothing."""
    with Broker(tmp_path, "default") as b:
        got = Collected(
            vs.from_mqtt("tele/#", port=b.port, qos=1, schema=SCHEMA, client_id="burst"),
            checkpoint_dir=tmp_path / "ckpt",
        )
        connected(got.job)
        publish(publisher(b), rows(range(600)))
        wait_for(lambda: got.height() == 600, what="600 rows")
        got.job.stop()
    assert sorted(got.rows()["id"]) == list(range(600))


def _log(ckpt: Path) -> WriteAheadLog:
    (d,) = (ckpt / "sources").iterdir()
    return WriteAheadLog(d, "test")


def test_log_trimmed_after_checkpoints(broker: Broker, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    got = Collected(
        vs.from_mqtt("tele/#", port=broker.port, qos=1, schema=SCHEMA, client_id="trim"),
        checkpoint_dir=ckpt,
    )
    connected(got.job)
    pub = publisher(broker)
    reader = next(iter(got.job._executor._readers.values()))
    assert reader.wal is not None
    trims = []
    for k in range(5):
        publish(pub, rows(range(k * 100, (k + 1) * 100)))
        wait_for(lambda k=k: got.height() == (k + 1) * 100, what="a round")
        logged = reader.wal.next_seq - 1
        # a checkpoint every 100 ms covers the round, and the log is trimmed up to it
        wait_for(lambda n=logged: reader.wal.trimmed == n, what="a trim")
        assert len(list(reader.wal.directory.glob("wal-*.log"))) <= 1
        trims.append(reader.wal.trimmed)
    assert trims == sorted(set(trims))  # every round trimmed further
    got.job.stop()
    log = _log(ckpt)
    entries = [seq for seq, _ in log.entries(0)]
    manifest = max(ckpt.glob("chk-*/manifest.json"))
    position = json.loads(manifest.read_text())["sources"][0]["splits"][0]["position"]
    assert position >= 5  # at least one entry per round
    assert log.trimmed == position
    assert entries == []
    assert not list(log.directory.glob("wal-*.log")) or log.size_bytes() == 0


def test_damaged_log_refused_torn_tail_cut(tmp_path: Path) -> None:
    log = WriteAheadLog(tmp_path / "wal", "from_mqtt")
    raw = pa.table(
        {
            "payload": [b"{}"],
            "topic": ["t"],
            "qos": pa.array([1], pa.int8()),
            "retain": [False],
            "mid": pa.array([1], pa.int32()),
            "timestamp": [0],
        },
        schema=WAL_SCHEMA,
    )
    for _ in range(3):
        log.append(raw)
    log.close()
    (seg,) = (tmp_path / "wal").glob("wal-*.log")
    data = seg.read_bytes()
    seg.write_bytes(data[:-5])  # a crash while appending the third entry
    again = WriteAheadLog(tmp_path / "wal", "from_mqtt")
    assert [s for s, _ in again.entries(0)] == [1, 2]
    assert again.next_seq == 3
    again.close()
    flipped = bytearray(seg.read_bytes())
    flipped[40] ^= 0xFF
    seg.write_bytes(bytes(flipped))
    with pytest.raises(SourceError, match="damaged"):
        WriteAheadLog(tmp_path / "wal", "from_mqtt")


_JOB = """
import sys, time
import polars as pl
import vstream as vs
port, out, ckpt = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = vs.from_mqtt("tele/#", port=port, qos=1, client_id="killed", batch_size=50,
                 schema={"id": pl.Int64, "host": pl.String, "cpu": pl.Float64})
job = s.sink_parquet(out, checkpoint_dir=ckpt, checkpoint_interval="700ms", lazy=True).start()
print("started", flush=True)
job.join()
"""


@pytest.mark.slow
def test_kill_and_restart_processes_logged_messages_once(tmp_path: Path) -> None:
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.setdefault("NUMBA_CACHE_DIR", str(tmp_path / "numba"))

    def start(port: int) -> subprocess.Popen[str]:
        args = [sys.executable, "-c", textwrap.dedent(_JOB), str(port), str(out), str(ckpt)]
        p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "started"
        return p

    def ids() -> list[int]:
        files = list(out.glob("*.parquet"))
        return pl.read_parquet(files)["id"].to_list() if files else []

    with Broker(tmp_path, "persistent") as b:
        subscribed(b, "killed")
        pub = publisher(b)
        sent = [0]
        stop = threading.Event()

        def feed() -> None:  # a steady stream, through the kills (the broker keeps it)
            while not stop.is_set():
                publish(pub, rows(range(sent[0], sent[0] + 50)))
                sent[0] += 50
                time.sleep(0.01)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        backlog = []
        in_log: set[int] = set()  # ids the killed processes had logged (and acknowledged)
        for k in range(2):  # two kills, while messages flow
            proc = start(b.port)
            seen = len(ids())
            wait_for(lambda s=seen: len(ids()) > s, what="committed output")
            time.sleep(0.2 + 0.3 * k)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            log = _log(ckpt)
            entries = list(log.entries(0))
            log.close()
            logged = [seq for seq, _ in entries]
            in_log.update(
                json.loads(p)["id"] for _, t in entries for p in t.column("payload").to_pylist()
            )
            manifest = max(ckpt.glob("chk-*/manifest.json"))
            at = json.loads(manifest.read_text())["sources"][0]["splits"][0]["position"] or 0
            backlog.append(sum(seq > at for seq in logged))
        # logged, acknowledged entries the last checkpoint did not cover: only the log has them
        assert max(backlog) > 0, backlog
        proc = start(b.port)
        time.sleep(0.5)
        stop.set()
        feeder.join()
        total = sent[0]
        if b.kind == "mosquitto":
            wait_for(lambda: len(ids()) >= total, timeout=60, what="every row")
        else:  # amqtt keeps nothing for a session while its client is away
            wait_for(lambda: in_log <= set(ids()), timeout=60, what="the logged rows")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    got = sorted(ids())
    assert len(got) == len(set(got)), "a row processed twice"
    assert in_log <= set(got), "a logged row lost"  # exactly-once from the log on
    if b.kind == "mosquitto":  # a persistent session: at-least-once end to end
        assert got == list(range(total))


# ---------------------------------------------------------------------- the sink
def _count_subscriber(b: Broker, topic: str) -> tuple[mqtt.Client, list[bytes]]:
    seen: list[bytes] = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    done = threading.Event()
    c.on_message = lambda cl, u, m: seen.append(m.payload)
    c.on_subscribe = lambda *a: done.set()
    c.connect(b.host, b.port)
    c.loop_start()
    c.subscribe(topic, 1)
    assert done.wait(10)
    return c, seen


@pytest.mark.parametrize(
    ("n", "bound"), [(5_000, 50), pytest.param(70_000, 10_000, marks=pytest.mark.slow)]
)
def test_sink_round_trip_bounds_inflight(broker: Broker, n: int, bound: int) -> None:
    sub, seen = _count_subscriber(broker, "alerts/cpu")
    df = pl.DataFrame({"id": range(n), "cpu": [0.5] * n})
    metrics = vs.from_polars(df, batch_size=20_000).sink_mqtt(
        "alerts/cpu", port=broker.port, qos=1, max_inflight=bound
    )
    assert metrics.events_out == n
    wait_for(lambda: len(seen) == n, timeout=60, what="every message")
    sub.loop_stop()
    got = pl.read_ndjson(b"\n".join(seen))
    assert sorted(got["id"]) == list(range(n))


def test_sink_arrow_into_source_arrow(broker: Broker) -> None:
    got = Collected(vs.from_mqtt("batches", port=broker.port, format="arrow", schema=SCHEMA))
    connected(got.job)
    df = pl.DataFrame({"id": range(1_000), "host": ["a"] * 1_000, "cpu": [1.0] * 1_000})
    vs.from_polars(df, batch_size=300).sink_mqtt("batches", port=broker.port, format="arrow")
    wait_for(lambda: got.height() == 1_000, what="1,000 rows")
    got.job.stop()
    assert got.rows().sort("id").equals(df)
    assert len(got.frames) <= 4  # one message per batch, each a whole batch


def test_sink_refuses_unreachable_broker() -> None:
    with pytest.raises(vs.SinkError, match="cannot connect"):
        vs.from_polars(pl.DataFrame({"a": [1]})).sink_mqtt("t", port=1, ack_timeout="2s")


# ---------------------------------------------------------------------- outage
def test_outage_gives_no_late_events_and_same_windows(tmp_path: Path) -> None:
    """A broker outage of twice idle_timeout in the middle of a stream: the source is
    disconnected, hence never idle, so the watermark waits for the backlog. (Needs the
    runtime to honour Reader.status().)"""
    # generous: after the outage the source must reconnect and the publisher send again
    # within idle_timeout, or the source is rightly idle (a quiet caught-up source moves
    # with the wall clock) and the rest late; 2 s holds on a loaded machine
    idle = 2.0
    with Broker(tmp_path, "persistent") as b:
        subscribed(b, "outage")
        src = vs.from_mqtt(
            "tele/#",
            port=b.port,
            qos=1,
            schema=SCHEMA,
            client_id="outage",
            reconnect_delay=(0.1, 0.3),
        )
        windowed = (
            src.with_watermark("id", max_out_of_orderness=0, idle_timeout=idle, time_unit="ms")
            .window(vs.tumbling(10), late="side")
            .agg(pl.len())
        )
        late: list[pl.DataFrame] = []
        out: list[pl.DataFrame] = []
        job = vs.start_all(
            [
                windowed.sink_callback(out.append, lazy=True),
                windowed.late_events().sink_callback(late.append, lazy=True),
            ]
        )
        connected(job)
        pub = publisher(b, "outage-pub")
        publish(pub, rows(range(100)))
        # all of the first half in the job before the broker goes (amqtt keeps no session
        # across a restart, so what it had not delivered would be lost)
        wait_for(lambda: job.metrics.events_in >= 100, what="the first half")
        pub.disconnect()
        pub.loop_stop()
        b.restart(down=2 * idle)
        connected(job)  # publish once the source is back: no session keeps it across amqtt
        pub = publisher(b, "outage-pub-2")
        publish(pub, rows(range(100, 200)))
        wait_for(
            lambda: sum(f["len"].sum() for f in out) + sum(f.height for f in late) >= 190,
            what="windows",
        )
        job.stop(drain=True)
    assert sum(f.height for f in late) == 0
    windows = pl.concat(out).sort("window_start")
    assert windows["len"].to_list() == [10] * 20
