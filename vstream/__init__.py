"""vstream: columnar stream processing over Arrow micro-batches with Polars expressions.

Examples
--------
>>> import polars as pl
>>> import vstream as vs
>>> s = vs.from_polars(pl.DataFrame({"ts": [1, 2], "cpu": [5.0, -1.0]})).filter(pl.col("cpu") >= 0)
>>> s.collect().height
1
"""

from __future__ import annotations

from vstream import datasets
from vstream.api import (
    Job,
    JoinedStream,
    LazySink,
    Stream,
    WindowBuilder,
    WindowedStream,
    collect_all,
    concat,
    from_arrow,
    from_kafka,
    from_mqtt,
    from_ndjson,
    from_parquet,
    from_polars,
    from_records,
    start_all,
    table,
)
from vstream.errors import (
    CheckpointError,
    CheckpointWarning,
    ColumnNotFoundError,
    DurationError,
    EventTimeError,
    ExpressionError,
    MissingDependencyError,
    PipelineError,
    PlanError,
    SchemaError,
    SinkError,
    SourceError,
    UnboundedError,
    VStreamError,
)
from vstream.plan.windows import Hopping, Session, Tumbling, hopping, session, tumbling
from vstream.runtime.metrics import Metrics

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "CheckpointWarning",
    "ColumnNotFoundError",
    "DurationError",
    "EventTimeError",
    "ExpressionError",
    "Hopping",
    "Job",
    "JoinedStream",
    "LazySink",
    "Metrics",
    "MissingDependencyError",
    "PipelineError",
    "PlanError",
    "SchemaError",
    "Session",
    "SinkError",
    "SourceError",
    "Stream",
    "Tumbling",
    "UnboundedError",
    "VStreamError",
    "WindowBuilder",
    "WindowedStream",
    "__version__",
    "collect_all",
    "concat",
    "datasets",
    "from_arrow",
    "from_kafka",
    "from_mqtt",
    "from_ndjson",
    "from_parquet",
    "from_polars",
    "from_records",
    "hopping",
    "session",
    "start_all",
    "table",
    "tumbling",
]
