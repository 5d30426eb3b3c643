"""A logical plan as bytes: to ship it to another process, or keep it beside its output.

The payload is JSON: every node of the plan (in topological order) with its fields, and
the values Polars and Arrow own in their own formats, base64-encoded: expressions as
``Expr.meta.serialize(format="binary")``, schemas, data types and frames as Arrow IPC.
Polars documents its expression format as unstable across versions, so the payload
records the Polars version and a payload of another version is refused; a SHA-256 of
the nodes refuses a damaged one.

Loading never unpickles: only the node and configuration classes listed here are built,
from plain data fields. The one callable a plan may hold, a ``map_batches`` function,
travels as its import path (``module:qualname``) and is imported again on loading (a
shipped plan needs the same code anyway), and only there; a lambda or a closure has no
path and is refused.
Sources travel as their configuration (:meth:`vstream.io.base.Source.config`):
``from_polars`` and ``from_arrow`` of a Table with their data (Arrow IPC), ``from_parquet``
with its files; a source whose ``config()`` is None is refused. The public entry points
are :meth:`vstream.Stream.serialize` and :meth:`vstream.Stream.deserialize`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import importlib
import io
import json
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl
import pyarrow as pa
from polars.exceptions import PanicException

from vstream.errors import PlanError
from vstream.io.base import Source
from vstream.io.memory import ArrowSource, PolarsSource
from vstream.io.parquet import ParquetSource
from vstream.plan.aggregates import AggLeaf, AggPlan
from vstream.plan.joins import JoinNode, JoinSetup
from vstream.plan.nodes import (
    ConcatNode,
    DeadLettersNode,
    EventTime,
    HeadNode,
    Node,
    RowIndexNode,
    SourceNode,
    StepNode,
    WatermarkNode,
    ancestors,
    import_path,
)
from vstream.plan.windows import LateEventsNode, WindowNode, WindowSetup

__all__ = ["FORMAT_VERSION", "PlanError", "checksum", "plan_from_bytes", "plan_to_bytes"]

#: the version of the payload's layout (not of Polars', recorded beside it)
FORMAT_VERSION = 1
_FORMAT = "vstream-plan"

_NODES: dict[str, type[Node]] = {
    c.__name__: c
    for c in (
        SourceNode,
        StepNode,
        WatermarkNode,
        HeadNode,
        RowIndexNode,
        ConcatNode,
        DeadLettersNode,
        WindowNode,
        LateEventsNode,
        JoinNode,
    )
}
# the frozen dataclasses a node's configuration is made of
# (WindowSetup and JoinSetup are defined beside their operators today; they are the
# steps' configuration, what the user asked, and belong to the plan)
_CONFIGS: dict[str, type[Any]] = {
    c.__name__: c for c in (EventTime, WindowSetup, JoinSetup, AggPlan, AggLeaf)
}


def plan_to_bytes(outputs: Sequence[Node]) -> bytes:
    """The logical plan that computes ``outputs`` (the nodes of Streams), as bytes.

    Raises
    ------
    PlanError
        For a step that cannot travel as data: a ``map_batches`` lambda or closure, or a
        source that is not ``from_polars``, ``from_arrow`` of a Table or ``from_parquet``.

    Examples
    --------
    >>> from vstream.plan.serialize import plan_to_bytes
    >>> from vstream.plan.serialize import plan_from_bytes
    >>> import polars as pl
    >>> import vstream as vs
    >>> s = vs.from_polars(pl.DataFrame({"x": [1, 2, 3]})).filter(pl.col("x") > 1)
    >>> (node,) = plan_from_bytes(plan_to_bytes([s.node]))
    >>> vs.Stream(node).collect()["x"].to_list()
    [2, 3]
    """
    nodes = ancestors(list(outputs))
    index = {n.id: i for i, n in enumerate(nodes)}
    encoder = _Encoder(index)
    body = {"nodes": [encoder.node(n) for n in nodes], "outputs": [index[n.id] for n in outputs]}
    payload = {
        "format": _FORMAT,
        "version": FORMAT_VERSION,
        "polars": pl.__version__,
        "sha256": checksum(body),
        **body,
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def checksum(body: dict[str, Any]) -> str:
    """The SHA-256 of a payload's ``nodes`` and ``outputs``, as canonical JSON: a damaged
    payload is refused before anything in it is built (Polars' binary expressions do not
    always notice damage themselves)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def plan_from_bytes(data: bytes) -> list[Node]:
    """The output nodes of a plan serialised by :func:`plan_to_bytes`, in its order.

    Raises
    ------
    PlanError
        If ``data`` is not such a payload, was written by another Polars version or
        another version of the format, or names a class this module does not build.
    """
    try:
        payload = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"plan_from_bytes: not a serialised plan ({exc})"
        raise PlanError(msg) from exc
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        msg = "plan_from_bytes: not a serialised plan (no 'vstream-plan' header)"
        raise PlanError(msg)
    if payload.get("version") != FORMAT_VERSION:
        msg = (
            f"plan_from_bytes: the payload has format version {payload.get('version')!r}; "
            f"this vstream reads version {FORMAT_VERSION}: serialise the plan again"
        )
        raise PlanError(msg)
    if payload.get("polars") != pl.__version__:
        msg = (
            f"plan_from_bytes: the plan was serialised with Polars {payload.get('polars')}, "
            f"this process has Polars {pl.__version__}; Polars' expression format is not "
            "stable across versions: build and serialise the plan again with this version"
        )
        raise PlanError(msg)
    body = {"nodes": payload.get("nodes"), "outputs": payload.get("outputs")}
    if payload.get("sha256") != checksum(body):
        msg = "plan_from_bytes: the payload is damaged (its SHA-256 does not match)"
        raise PlanError(msg)
    decoder = _Decoder()
    try:
        for entry in payload["nodes"]:
            decoder.nodes.append(decoder.node(entry))
        return [decoder.nodes[i] for i in payload["outputs"]]
    except PlanError:
        raise
    except (Exception, PanicException) as exc:  # a forged payload: whatever broke
        msg = f"plan_from_bytes: a forged or damaged payload ({type(exc).__name__}: {exc})"
        raise PlanError(msg) from exc


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _frame_bytes(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_ipc(buf)
    return buf.getvalue()


def _frame(data: bytes) -> pl.DataFrame:
    return pl.read_ipc(io.BytesIO(data))


def _table_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _table(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


class _Encoder:
    def __init__(self, index: dict[int, int]) -> None:
        self.index = index
        self.step = ""  # the label of the node being encoded, for errors

    def node(self, node: Node) -> dict[str, Any]:
        kind = type(node).__name__
        self.step = node.label
        if _NODES.get(kind) is not type(node):
            msg = f"{node.label}: a {kind} step cannot be serialised"
            raise PlanError(msg)
        fields = {k: self.value(v, k) for k, v in vars(node).items() if k != "id"}
        return {"type": kind, "fields": fields}

    def value(self, v: Any, name: str) -> Any:
        if v is None or isinstance(v, bool | int | float | str):
            return v
        if isinstance(v, list):
            return {"list": [self.value(x, name) for x in v]}
        if isinstance(v, tuple):
            return {"tuple": [self.value(x, name) for x in v]}
        if isinstance(v, frozenset):
            return {"frozenset": [self.value(x, name) for x in sorted(v, key=repr)]}
        if isinstance(v, pl.Expr):
            return {"expr": _b64(v.meta.serialize(format="binary"))}
        if isinstance(v, pl.Schema):  # before dict: a Schema is a dict
            return {"schema": _b64(_frame_bytes(pl.DataFrame(schema=v)))}
        if isinstance(v, dict):
            return {"dict": [[self.value(k, name), self.value(x, name)] for k, x in v.items()]}
        if isinstance(v, pl.DataType) or (isinstance(v, type) and issubclass(v, pl.DataType)):
            return {"dtype": _b64(_frame_bytes(pl.DataFrame(schema={"dtype": v})))}
        if isinstance(v, pl.DataFrame):
            return {"frame": _b64(_frame_bytes(v))}
        if isinstance(v, Node):
            return {"node": self.index[v.id]}
        if isinstance(v, Source):
            return {"source": self.source(v)}
        if type(v).__name__ in _CONFIGS and dataclasses.is_dataclass(v):
            fields = {f.name: self.value(getattr(v, f.name), name) for f in dataclasses.fields(v)}
            return {"config": {"class": type(v).__name__, "fields": fields}}
        if callable(v):
            path = import_path(v)
            if path is None:
                msg = (
                    f"{self.step}: its function cannot be serialised (a lambda, a closure or "
                    "a callable object has no import path, and functions are never "
                    "pickled); define it at the top level of a module, or build the plan "
                    "in the process that runs it"
                )
                raise PlanError(msg)
            return {"function": path}
        msg = f"{self.step}: cannot serialise its {name} ({type(v).__name__})"
        raise PlanError(msg)

    def source(self, src: Source) -> dict[str, Any]:
        # the source's configuration as its constructor took it (Source.config())
        cfg = src.config() or {}
        kind, data = cfg.get("kind"), cfg.get("data")
        if kind == "polars" and isinstance(data, pl.DataFrame):
            return {
                "kind": kind,
                "data": _b64(_frame_bytes(data)),
                "batch_size": cfg["batch_size"],
            }
        if kind == "arrow" and isinstance(data, pa.Table):
            return {
                "kind": kind,
                "data": _b64(_table_bytes(data)),
                "batch_size": cfg["batch_size"],
                "rate": cfg["rate"],
                "max_delay": cfg["max_delay"],
            }
        if kind == "parquet":
            return {"kind": kind, "files": cfg["files"], "batch_size": cfg["batch_size"]}
        msg = (
            f"{src.label}: this source cannot be serialised; a plan travels with "
            "from_polars, from_arrow of a Table, or from_parquet sources"
        )
        raise PlanError(msg)


class _Decoder:
    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.in_function_field = False  # decoding a map_batches step's function

    def node(self, entry: dict[str, Any]) -> Node:
        cls = _NODES.get(entry["type"])
        if cls is None:
            msg = f"plan_from_bytes: unknown step type {entry['type']!r}"
            raise PlanError(msg)
        node = cls.__new__(cls)
        Node.__init__(node)  # a fresh id in this process
        for k, v in entry["fields"].items():
            # data fields only: nothing may replace a method or a private member
            if not isinstance(k, str) or k.startswith("_") or callable(getattr(cls, k, None)):
                msg = f"plan_from_bytes: a {entry['type']} cannot have the field {k!r}"
                raise PlanError(msg)
            # the one callable of a plan: a map_batches step's function
            self.in_function_field = cls is StepNode and k == "function"
            try:
                setattr(node, k, self.value(v))
            except PlanError as exc:
                msg = f"{exc} (the field {k!r} of a {entry['type']})"
                raise PlanError(msg) from exc
            finally:
                self.in_function_field = False
        return node

    def value(self, v: Any) -> Any:
        if not isinstance(v, dict):
            if isinstance(v, list):
                msg = "plan_from_bytes: a bare list in the payload"
                raise PlanError(msg)
            return v
        if len(v) != 1:
            msg = f"plan_from_bytes: a value with {len(v)} tags"
            raise PlanError(msg)
        ((tag, body),) = v.items()
        if tag == "list":
            return [self.value(x) for x in body]
        if tag == "tuple":
            return tuple(self.value(x) for x in body)
        if tag == "frozenset":
            return frozenset(self.value(x) for x in body)
        if tag == "dict":
            return {self.value(k): self.value(x) for k, x in body}
        if tag == "expr":
            return pl.Expr.deserialize(io.BytesIO(_unb64(body)), format="binary")
        if tag == "schema":
            return _frame(_unb64(body)).schema
        if tag == "dtype":
            return _frame(_unb64(body)).schema["dtype"]
        if tag == "frame":
            return _frame(_unb64(body))
        if tag == "node":
            return self.nodes[body]
        if tag == "source":
            return self._source(body)
        if tag == "config":
            return self._config(body)
        if tag == "function":
            if not self.in_function_field:
                msg = "plan_from_bytes: a function where the plan holds data"
                raise PlanError(msg)
            return self._function(body)
        msg = f"plan_from_bytes: unknown value tag {tag!r}"
        raise PlanError(msg)

    def _config(self, v: dict[str, Any]) -> Any:
        cls = _CONFIGS.get(v["class"])
        if cls is None:
            msg = f"plan_from_bytes: unknown configuration class {v['class']!r}"
            raise PlanError(msg)
        return cls(**{k: self.value(x) for k, x in v["fields"].items()})

    def _function(self, path: str) -> Callable[..., Any]:
        module, _, qualname = path.partition(":")
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
        if not callable(found):
            msg = f"plan_from_bytes: {path} is not a function"
            raise PlanError(msg)
        return found  # type: ignore[no-any-return]

    def _source(self, cfg: dict[str, Any]) -> Source:
        kind = cfg["kind"]
        if kind == "polars":
            return PolarsSource(_frame(_unb64(cfg["data"])), cfg["batch_size"])
        if kind == "arrow":
            return ArrowSource(
                _table(_unb64(cfg["data"])),
                cfg["batch_size"],
                None,
                rate=cfg["rate"],
                max_delay=cfg["max_delay"],
            )
        if kind == "parquet":
            return ParquetSource(list(cfg["files"]), cfg["batch_size"])
        msg = f"plan_from_bytes: unknown source kind {kind!r}"
        raise PlanError(msg)
