"""How the events of a Nexmark dataset are drawn (the model is in :func:`nexmark`'s notes).

Everything but the public functions of :mod:`vstream.datasets.nexmark`: the constants of
the model, its fixed pools of strings and text, the validated arguments and the generator
that draws a chunk of event ids at a time.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import pyarrow as pa

from vstream.datasets._common import EPOCH, ONE_MS, check_int, is_real, rebatch
from vstream.errors import PipelineError

_NX_EPOCH = 50  # events per epoch: 1 person, 3 auctions, then 46 bids
_NX_AUCTIONS = 3
_NX_BIDS = _NX_EPOCH - 1 - _NX_AUCTIONS
_NX_FIRST_ID = 1000  # first person id and first auction id
_NX_CHUNK = 100_000  # event ids per random stream; a multiple of _NX_EPOCH
_NX_IN_FLIGHT = 100  # auctions open at a time, on average
_NX_ACTIVE_PEOPLE = 1000  # non-hot bidders and sellers are among the newest people
_NX_HOT_WINDOW = 100  # the hot auction / person is the first of each block of 100
_NX_AUCTION_LEAD = 10  # non-hot auction draws reach 10 past the newest, then are clipped
# A hot ratio r: the hot choice with probability (r - 1) / r, as Nexmark's hot*Ratio.
_NX_HOT_AUCTION_RATIO = 2
_NX_HOT_BIDDER_RATIO = 4
_NX_HOT_SELLER_RATIO = 4
_NX_HOT_CHANNEL_RATIO = 10  # 9 bids in 10 from a hot channel, the rest from channel-<n>
_NX_CHANNELS = 10_000
_NX_FIRST_CATEGORY = 10
_NX_CATEGORIES = 5
_NX_PRICE_DECADES = 6.0  # prices are 100 * 10**(6u) cents
# Average size of each kind in bytes (8 per number or time, the length of each string):
# ``extra`` pads a row to this size, give or take 20%.
_NX_PERSON_SIZE = 200
_NX_AUCTION_SIZE = 500
_NX_BID_SIZE = 100
_NX_POOL = 10_000  # random item names and descriptions to pick from
_NX_TEXT = 1 << 20  # period of the random text the ``extra`` strings are cut from
_NX_TEXT_LEAD = 4 << 20  # the text repeats this far, so a chunk's extras are one window
_NX_POOL_SEED = 20_240_101  # pools and text are fixed: the seed only picks from them
_FIRST_NAMES = (
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"
)  # fmt: skip
_LAST_NAMES = (
    "Shultz",
    "Abrams",
    "Spencer",
    "White",
    "Bartels",
    "Walton",
    "Smith",
    "Jones",
    "Noris",
)
_CITIES = (
    "Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle",
    "Kent", "Cheyenne",
)  # fmt: skip
_STATES = ("AZ", "CA", "ID", "OR", "WA", "WY")
_HOT_CHANNELS = ("Google", "Facebook", "Baidu", "Apple")
_NX_URL = "https://www.nexmark.com/{}/item.htm?query=1"

NexmarkKind = Literal["person", "auction", "bid"]
KINDS: tuple[NexmarkKind, ...] = ("person", "auction", "bid")


def _nexmark_schemas() -> dict[NexmarkKind, pa.Schema]:
    text, ms, i64 = pa.large_string(), pa.timestamp("ms"), pa.int64()
    return {
        "person": pa.schema(
            [
                ("id", i64),
                ("name", text),
                ("email_address", text),
                ("credit_card", text),
                ("city", text),
                ("state", text),
                ("date_time", ms),
                ("extra", text),
            ]
        ),
        "auction": pa.schema(
            [
                ("id", i64),
                ("item_name", text),
                ("description", text),
                ("initial_bid", i64),
                ("reserve", i64),
                ("date_time", ms),
                ("expires", ms),
                ("seller", i64),
                ("category", i64),
                ("extra", text),
            ]
        ),
        "bid": pa.schema(
            [
                ("auction", i64),
                ("bidder", i64),
                ("price", i64),
                ("channel", text),
                ("url", text),
                ("date_time", ms),
                ("extra", text),
            ]
        ),
    }


@dataclass(frozen=True, slots=True)
class _NexmarkSpec:
    """Validated arguments of one Nexmark dataset."""

    n: int
    rate: float
    seed: int
    start_ms: int


def nexmark_spec(n_events: object, rate: object, seed: object, start: object) -> _NexmarkSpec:
    n = check_int(n_events, "n_events", 0)
    seed = check_int(seed, "seed", 0)
    if not is_real(rate) or not (math.isfinite(rate) and rate > 0):  # type: ignore[arg-type,operator]
        msg = f"rate must be a finite number of events per second > 0, got {rate!r}"
        raise PipelineError(msg)
    eps = float(rate)  # type: ignore[arg-type]
    if not isinstance(start, datetime):
        msg = f"start must be a datetime, got {type(start).__name__} {start!r}"
        raise PipelineError(msg)
    aware = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
    start_ms = (aware - EPOCH) // ONE_MS
    # The last expiry (an auction lasts less than 1.5 times the in-flight horizon plus one
    # ms; 2 leaves room) has to fit an Int64 of milliseconds, and event id * 1000 a float64
    # exactly.
    span = (n + 2 * _NX_IN_FLIGHT * _NX_EPOCH / _NX_AUCTIONS) * 1000.0 / eps + 1
    if n > 2**43 or abs(start_ms) + span >= 2**62:
        msg = (
            f"n_events={n} at rate={rate!r} from {start} overflow a millisecond "
            "timestamp: use a higher rate or fewer events"
        )
        raise PipelineError(msg)
    return _NexmarkSpec(n=n, rate=eps, seed=seed, start_ms=start_ms)


def _letters(u: np.ndarray) -> np.ndarray:
    """Lowercase ASCII letters (uint8) from uniforms in [0, 1)."""
    out: np.ndarray = (u * 26).astype(np.uint8) + np.uint8(ord("a"))
    return out


def _offsets(lengths: np.ndarray, start: int = 0) -> np.ndarray:
    out = np.empty(len(lengths) + 1, dtype=np.int64)
    out[0] = start
    np.cumsum(lengths, out=out[1:])
    if start:
        out[1:] += start
    return out


def _strings(lengths: np.ndarray, data: np.ndarray | pa.Buffer, start: int = 0) -> pa.Array:
    """A large_string array of consecutive pieces of ``data`` of the given lengths."""
    buffer = data if isinstance(data, pa.Buffer) else pa.py_buffer(np.ascontiguousarray(data))
    return pa.LargeStringArray.from_buffers(
        len(lengths), pa.py_buffer(_offsets(lengths, start)), buffer
    )


@dataclass(frozen=True, slots=True)
class _Pool:
    """Strings to pick from by index, with their lengths in bytes."""

    values: pa.Array
    lengths: np.ndarray

    @classmethod
    def of(cls, values: list[str] | tuple[str, ...]) -> _Pool:
        array = pa.array(values, pa.large_string())
        lengths = np.array([len(v.encode()) for v in values], dtype=np.int64)
        return cls(array, lengths)

    def pick(self, u: np.ndarray) -> tuple[pa.Array, np.ndarray]:
        """The strings at ``floor(u * len)`` for uniforms ``u``, and their lengths."""
        index = np.minimum((u * len(self.lengths)).astype(np.int64), len(self.lengths) - 1)
        return self.values.take(pa.array(index)), self.lengths[index]


def _random_pool(rng: np.random.Generator, count: int, low: int, high: int) -> _Pool:
    """``count`` random strings of letters (1 in 13 a space) with lengths in [low, high)."""
    lengths = rng.integers(low, high, count)
    total = int(lengths.sum())
    data = _letters(rng.random(total))
    data[rng.random(total) < 1 / 13] = ord(" ")
    ends = np.cumsum(lengths)
    # Words never start or end with a space.
    data[ends - lengths] = _letters(rng.random(count))
    data[ends - 1] = _letters(rng.random(count))
    return _Pool(_strings(lengths, data), lengths.astype(np.int64))


@dataclass(frozen=True, slots=True)
class _NexmarkPools:
    """Fixed strings shared by every Nexmark dataset."""

    names: _Pool
    cities: _Pool
    states: _Pool
    items: _Pool
    descriptions: _Pool
    channels: _Pool  # the hot channels, then channel-0, channel-1, ...
    urls: _Pool  # the url of each channel
    channel_of: np.ndarray  # the channel of each of _NX_HOT_CHANNEL_RATIO * _NX_CHANNELS slots
    bid_pad_base: np.ndarray  # the padding of a bid, per channel (see _padding)
    bid_pad_width: np.ndarray
    text: pa.Buffer  # random text; byte i + _NX_TEXT is byte i


@functools.cache
def _nexmark_pools() -> _NexmarkPools:
    rng = np.random.Generator(np.random.PCG64(_NX_POOL_SEED))
    names = [f"{first} {last}" for first in _FIRST_NAMES for last in _LAST_NAMES]
    items = _random_pool(rng, _NX_POOL, 3, 20)
    descriptions = _random_pool(rng, _NX_POOL, 3, 100)
    n_channels = len(_HOT_CHANNELS) + _NX_CHANNELS
    paths = _letters(rng.random((n_channels, 5))).tobytes().decode()
    urls = [_NX_URL.format(paths[5 * i : 5 * i + 5]) for i in range(n_channels)]
    channels = list(_HOT_CHANNELS)
    for n in range(_NX_CHANNELS):
        channels.append(f"channel-{n}")
        urls[len(_HOT_CHANNELS) + n] += f"&channel_id={n}"
    period = _letters(rng.random(_NX_TEXT))
    period[rng.random(_NX_TEXT) < 1 / 8] = ord(" ")
    text = np.resize(period, _NX_TEXT + _NX_TEXT_LEAD)
    # A uniform slot picks the channel: the first (ratio - 1) * _NX_CHANNELS slots share
    # the hot channels, each other slot is one channel-<n>.
    slot = np.arange(_NX_HOT_CHANNEL_RATIO * _NX_CHANNELS, dtype=np.int64)
    hot_slots = (_NX_HOT_CHANNEL_RATIO - 1) * _NX_CHANNELS
    n_hot = len(_HOT_CHANNELS)
    channel_of = np.where(slot < hot_slots, slot * n_hot // hot_slots, n_hot + slot - hot_slots)
    channel_pool, url_pool = _Pool.of(channels), _Pool.of(urls)
    bid_size = 8 * 4 + channel_pool.lengths + url_pool.lengths
    pad_base, pad_width = _padding(bid_size, _NX_BID_SIZE)
    return _NexmarkPools(
        names=_Pool.of(names),
        cities=_Pool.of(_CITIES),
        states=_Pool.of(_STATES),
        items=items,
        descriptions=descriptions,
        channels=channel_pool,
        urls=url_pool,
        channel_of=channel_of,
        bid_pad_base=pad_base,
        bid_pad_width=pad_width,
        text=pa.py_buffer(text),
    )


def _padding(size: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Extra lengths ``base + floor(u * width)`` that pad rows of ``size`` bytes to ``target``.

    As in the Nexmark reference: the missing bytes ``m``, give or take 20% of ``m``.
    """
    rest = np.maximum(target - size, 0)
    delta = (rest * 0.2 + 0.5).astype(np.int64)
    return rest - delta, 2 * delta


def _extras(text: pa.Buffer, lengths: np.ndarray, u_start: float) -> pa.Array:
    """Strings of the given lengths, consecutive pieces of the random text.

    They start at byte ``floor(u_start * _NX_TEXT)`` of the text: usually a window of the
    text itself, without copying.
    """
    start = int(u_start * _NX_TEXT)
    total = int(lengths.sum())
    if start + total <= _NX_TEXT + _NX_TEXT_LEAD:
        return _strings(lengths, text, start)
    period = np.frombuffer(text, dtype=np.uint8)[:_NX_TEXT]
    return _strings(lengths, np.resize(np.roll(period, -start), total))


def _hot_or_recent(
    u: np.ndarray, ratio: int, hot: np.ndarray, low: np.ndarray, count: np.ndarray
) -> np.ndarray:
    """``hot`` with probability ``(ratio - 1) / ratio``, else uniform in ``[low, low + count)``.

    One uniform ``u`` decides both: ``t = floor(u * ratio * count)`` picks the hot value
    below ``(ratio - 1) * count`` and ``low + t - (ratio - 1) * count`` above.
    """
    n_hot = (ratio - 1) * count
    t = (u * (ratio * count)).astype(np.int64)
    out: np.ndarray = np.where(t < n_hot, hot, t + (low - n_hot))
    return out


def _people(last: np.ndarray, u: np.ndarray, ratio: int, offset: int) -> np.ndarray:
    """Base-0 people who exist once person ``last`` does.

    The hot person ``(last // 100) * 100 + offset`` (at most ``last``) with probability
    ``(ratio - 1) / ratio``, else one of the ``_NX_ACTIVE_PEOPLE`` newest, uniformly.
    """
    active = np.minimum(last + 1, _NX_ACTIVE_PEOPLE)
    hot = np.minimum(last // _NX_HOT_WINDOW * _NX_HOT_WINDOW + offset, last)
    out: np.ndarray = np.minimum(_hot_or_recent(u, ratio, hot, last + 1 - active, active), last)
    return out


def _prices(u: np.ndarray) -> np.ndarray:
    """``round(10 ** (6 * u) * 100)`` cents: from $1 to $1,000,000, log-uniform."""
    x = np.exp(u * (_NX_PRICE_DECADES * math.log(10)) + math.log(100))
    x += 0.5
    out: np.ndarray = x.astype(np.int64)
    return out


def _rows(first: int, end: int, low: int, high: int) -> int:
    """How many event ids in [first, end) have their position in the epoch in [low, high)."""
    whole, part = divmod(end - first, _NX_EPOCH)
    return whole * (high - low) + min(max(part - low, 0), high - low)


def _timestamps(ms: np.ndarray) -> pa.Array:
    return pa.array(ms.view("M8[ms]"))


class NexmarkGenerator:
    """Draws the chunks of one Nexmark dataset.

    Chunk ``c`` holds the event ids ``[c * _NX_CHUNK, (c + 1) * _NX_CHUNK)`` (clipped to
    ``n``): whole epochs. Each kind of event draws from its own random stream, seeded by
    ``(seed, chunk, kind)``: first the offset of its ``extra`` text, then a block of
    uniforms with one row per field and one column per event of a whole chunk, so that a
    row's values do not depend on where the dataset ends.
    """

    def __init__(self, spec: _NexmarkSpec) -> None:
        self.spec = spec
        self.schemas = _nexmark_schemas()
        self.pools = _nexmark_pools()
        self.ms_per_event = 1000.0 / spec.rate
        # Auctions last about as long as it takes to create _NX_IN_FLIGHT of them.
        self.horizon_ms = _NX_IN_FLIGHT * _NX_EPOCH / _NX_AUCTIONS * self.ms_per_event
        epochs = _NX_CHUNK // _NX_EPOCH
        self.full = {"person": epochs, "auction": epochs * _NX_AUCTIONS, "bid": epochs * _NX_BIDS}

    def _uniforms(self, index: int, kind: int, fields: int, rows: int) -> tuple[float, np.ndarray]:
        seq = np.random.SeedSequence(self.spec.seed, spawn_key=(2, index, kind))
        rng = np.random.Generator(np.random.PCG64(seq))
        text_start = rng.random()
        return text_start, rng.random((fields, rows))

    def _times(self, events: np.ndarray) -> np.ndarray:
        # events * 1000 is exact in float64 (events < 2**43), so this is exactly Python's
        # floor(event * 1000 / rate) (a truncation, the quotient is >= 0).
        ms = (events * 1000.0 / self.spec.rate).astype(np.int64)
        ms += self.spec.start_ms
        return ms

    def person(self, index: int, first: int, end: int) -> pa.RecordBatch:
        n = _rows(first, end, 0, 1)
        text_start, u = self._uniforms(index, 0, 20, self.full["person"])
        u = u[:, :n]
        pools = self.pools
        base = np.arange(first // _NX_EPOCH, first // _NX_EPOCH + n, dtype=np.int64)
        name, name_len = pools.names.pick(u[0])
        city, city_len = pools.cities.pick(u[1])
        state, state_len = pools.states.pick(u[2])
        # email: 3 to 6 letters, "@", 3 or 4 letters, ".com"
        local = 3 + (u[3] * 4).astype(np.int64)
        domain = 3 + (u[4] * 2).astype(np.int64)
        chars = np.empty((n, 15), dtype=np.uint8)
        chars[:, :6] = _letters(u[5:11].T)
        chars[:, 6] = ord("@")
        chars[:, 7:11] = _letters(u[11:15].T)
        chars[:, 11:] = np.frombuffer(b".com", dtype=np.uint8)
        keep = np.ones((n, 15), dtype=bool)
        keep[:, :6] = np.arange(6) < local[:, None]
        keep[:, 7:11] = np.arange(4) < domain[:, None]
        email_len = local + domain + 5
        email = _strings(email_len, chars[keep])
        # credit card: four groups of four digits
        groups = (u[15:19].T * 10_000).astype(np.int64)
        card = np.full((n, 4, 5), ord(" "), dtype=np.uint8)
        for pos, scale in enumerate((1000, 100, 10, 1)):
            card[:, :, pos] = groups // scale % 10 + ord("0")
        card_len = np.full(n, 19, dtype=np.int64)
        credit_card = _strings(card_len, card.reshape(n, 20)[:, :19])
        size = 8 * 2 + name_len + email_len + card_len + city_len + state_len
        pad_base, pad_width = _padding(size, _NX_PERSON_SIZE)
        extra_len = pad_base + (u[19] * pad_width).astype(np.int64)
        columns = [
            pa.array(base + _NX_FIRST_ID),
            name,
            email,
            credit_card,
            city,
            state,
            _timestamps(self._times(base * _NX_EPOCH)),
            _extras(pools.text, extra_len, text_start),
        ]
        return pa.RecordBatch.from_arrays(columns, schema=self.schemas["person"])

    def auction(self, index: int, first: int, end: int) -> pa.RecordBatch:
        n = _rows(first, end, 1, 1 + _NX_AUCTIONS)
        text_start, u = self._uniforms(index, 1, 8, self.full["auction"])
        u = u[:, :n]
        pools = self.pools
        base = np.arange(n, dtype=np.int64) + first // _NX_EPOCH * _NX_AUCTIONS
        epoch = base // _NX_AUCTIONS
        events = base + epoch * (_NX_EPOCH - _NX_AUCTIONS) + 1
        item, item_len = pools.items.pick(u[0])
        description, description_len = pools.descriptions.pick(u[1])
        initial = _prices(u[2])
        reserve = initial + _prices(u[3])
        ms = self._times(events)
        expires = ms + 1 + (self.horizon_ms * (0.5 + u[4])).astype(np.int64)
        seller = _people(epoch, u[5], _NX_HOT_SELLER_RATIO, 0)
        category = _NX_FIRST_CATEGORY + np.minimum(
            (u[6] * _NX_CATEGORIES).astype(np.int64), _NX_CATEGORIES - 1
        )
        size = 8 * 7 + item_len + description_len
        pad_base, pad_width = _padding(size, _NX_AUCTION_SIZE)
        extra_len = pad_base + (u[7] * pad_width).astype(np.int64)
        columns = [
            pa.array(base + _NX_FIRST_ID),
            item,
            description,
            pa.array(initial),
            pa.array(reserve),
            _timestamps(ms),
            _timestamps(expires),
            pa.array(seller + _NX_FIRST_ID),
            pa.array(category),
            _extras(pools.text, extra_len, text_start),
        ]
        return pa.RecordBatch.from_arrays(columns, schema=self.schemas["auction"])

    def bid(self, index: int, first: int, end: int) -> pa.RecordBatch:
        n = _rows(first, end, 1 + _NX_AUCTIONS, _NX_EPOCH)
        text_start, u_all = self._uniforms(index, 2, 5, self.full["bid"])
        # Work on (epoch, bid of the epoch) grids: what only depends on the epoch is
        # computed once per epoch and broadcast.
        epochs = -(-n // _NX_BIDS)
        u = u_all[:, : epochs * _NX_BIDS].reshape(5, epochs, _NX_BIDS)
        pools = self.pools
        epoch = np.arange(first // _NX_EPOCH, first // _NX_EPOCH + epochs, dtype=np.int64)
        epoch = epoch[:, None]
        # The auctions: every bid comes after the three auctions of its epoch.
        last = epoch * _NX_AUCTIONS + _NX_AUCTIONS - 1
        low = np.maximum(last - _NX_IN_FLIGHT, 0)
        hot = last // _NX_HOT_WINDOW * _NX_HOT_WINDOW
        count = last + _NX_AUCTION_LEAD + 1 - low
        auction = np.minimum(_hot_or_recent(u[0], _NX_HOT_AUCTION_RATIO, hot, low, count), last)
        bidder = _people(epoch, u[1], _NX_HOT_BIDDER_RATIO, 1)
        price = _prices(u[2])
        slot = (u[3] * len(pools.channel_of)).astype(np.int64)
        channel_index = pools.channel_of[slot].ravel()[:n]
        extra_len = pools.bid_pad_base[channel_index] + (
            u[4].ravel()[:n] * pools.bid_pad_width[channel_index]
        ).astype(np.int64)
        events = epoch * _NX_EPOCH + np.arange(1 + _NX_AUCTIONS, _NX_EPOCH)
        take = pa.array(channel_index)
        columns = [
            pa.array(auction.ravel()[:n] + _NX_FIRST_ID),
            pa.array(bidder.ravel()[:n] + _NX_FIRST_ID),
            pa.array(price.ravel()[:n]),
            pools.channels.values.take(take),
            pools.urls.values.take(take),
            _timestamps(self._times(events).ravel()[:n]),
            _extras(pools.text, extra_len, text_start),
        ]
        return pa.RecordBatch.from_arrays(columns, schema=self.schemas["bid"])

    def chunk(self, index: int) -> tuple[pa.RecordBatch, pa.RecordBatch, pa.RecordBatch]:
        """The events with ids in [index * _NX_CHUNK, (index + 1) * _NX_CHUNK), up to n."""
        first = index * _NX_CHUNK
        end = min(first + _NX_CHUNK, self.spec.n)
        return (
            self.person(index, first, end),
            self.auction(index, first, end),
            self.bid(index, first, end),
        )

    def chunks(self) -> Iterator[tuple[pa.RecordBatch, pa.RecordBatch, pa.RecordBatch]]:
        for index in range(-(-self.spec.n // _NX_CHUNK)):
            yield self.chunk(index)

    def tables(self, batch_size: int | None) -> dict[NexmarkKind, pa.Table]:
        parts: dict[NexmarkKind, list[pa.RecordBatch]] = {kind: [] for kind in KINDS}
        for chunk in self.chunks():
            for kind, batch in zip(KINDS, chunk, strict=True):
                if batch.num_rows:
                    parts[kind].append(batch)
        return {
            kind: pa.Table.from_batches(
                list(rebatch(iter(batches), batch_size)) if batch_size else batches,
                schema=self.schemas[kind],
            )
            for kind, batches in parts.items()
        }
