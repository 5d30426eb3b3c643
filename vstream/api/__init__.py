"""The fluent API: sources, the Stream and its steps, windows, joins, sinks and jobs.

It builds a logical plan (:mod:`vstream.plan`) and hands it to the runtime; nothing below
imports it. One concern a module, as Polars' ``lazyframe/``:

- :mod:`~vstream.api.sources`: ``from_polars``, ``from_parquet``, ... (a Stream per source)
- :mod:`~vstream.api.stream`: the Stream, event time, stateless steps, the join methods
- :mod:`~vstream.api.polars_methods`: the step builder and the row-wise methods named as
  Polars names them (``cast``, ``fill_null``, ``explode``, ``with_row_index``, ...)
- :mod:`~vstream.api.window`: ``window(...)``'s arguments and ``.agg(...)``
- :mod:`~vstream.api.join`: join results, lookup tables
- :mod:`~vstream.api.sinks`: the terminal calls and lazy sinks (the NDJSON, CSV and IPC
  sinks in :mod:`~vstream.api.file_sinks`, MQTT in :mod:`~vstream.api.mqtt_sink`)
- :mod:`~vstream.api.functions`: ``collect_all``, ``start_all``, ``concat``
- :mod:`~vstream.api.job`: the handle of a background run
- :mod:`~vstream.api.options`: the option sets as ``Literal`` aliases
"""

from __future__ import annotations

from vstream.api.functions import collect_all, concat, start_all
from vstream.api.job import Job
from vstream.api.join import JoinedStream, TableStream, table
from vstream.api.sinks import LazySink
from vstream.api.sources import (
    from_arrow,
    from_kafka,
    from_mqtt,
    from_ndjson,
    from_parquet,
    from_polars,
    from_records,
)
from vstream.api.stream import Stream
from vstream.api.window import WindowBuilder, WindowedStream

__all__ = [
    "Job",
    "JoinedStream",
    "LazySink",
    "Stream",
    "TableStream",
    "WindowBuilder",
    "WindowedStream",
    "collect_all",
    "concat",
    "from_arrow",
    "from_kafka",
    "from_mqtt",
    "from_ndjson",
    "from_parquet",
    "from_polars",
    "from_records",
    "start_all",
    "table",
]
