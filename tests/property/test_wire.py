"""The wire format: batches round-trip bit for bit without copies, and no malformed
message makes the decoder do anything but refuse it with a WireError."""

from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tickwise.engine.errors import TickwiseError
from tickwise.feeds import wire

SCHEMAS = [name for name in wire.DTYPES]


@st.composite
def batches(draw, schema: str | None = None):
    """A batch of any wire schema: every field any value its type holds (NaN, inf, -0.0)."""
    name = draw(st.sampled_from(SCHEMAS)) if schema is None else schema
    dtype = wire.DTYPES[name]
    rows = draw(st.integers(0, 70))
    columns = {
        field: draw(hnp.arrays(dtype.fields[field][0], rows)) for field in dtype.names
    }  # fmt: skip
    return name, columns


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


@settings(max_examples=300, deadline=None)
@given(batch=batches(), seq=st.integers(0, 2**64 - 1), send_ts=st.integers(-(2**63), 2**63 - 1))
def test_a_batch_round_trips_bit_for_bit_as_views_of_the_body(batch, seq, send_ts) -> None:
    name, columns = batch
    header, body = wire.encode(name, columns, seq, send_ts)
    assert len(header) == wire.header_size(len(columns))
    message = wire.decode([header, bytes(body)])
    assert (message.schema, message.seq, message.send_ts) == (name, seq, send_ts)
    assert message.rows == len(next(iter(columns.values())))
    frame = memoryview(bytearray(body))  # a buffer the test owns, to see the views in it
    viewed = wire.decode([header, frame])
    owner = np.frombuffer(frame, dtype=np.uint8)
    for field, values in columns.items():
        assert same_bits(message.columns[field], values), field
        assert not message.columns[field].flags.writeable
        assert viewed.columns[field].size == 0 or np.shares_memory(viewed.columns[field], owner)
    arrow = viewed.batch
    assert arrow.schema.names == list(columns)
    for field, values in columns.items():
        got = arrow.column(field).to_numpy(zero_copy_only=True)
        assert same_bits(got, values), field
        assert got.size == 0 or np.shares_memory(got, owner)  # Arrow over the same memory


@given(seq=st.integers(0, 2**64 - 1), send_ts=st.integers(-(2**63), 2**63 - 1))
def test_a_heartbeat_carries_the_last_sequence_number(seq, send_ts) -> None:
    message = wire.decode(list(wire.heartbeat(seq, send_ts)))
    assert message.is_heartbeat
    assert (message.seq, message.send_ts, message.rows) == (seq, send_ts, 0)
    with pytest.raises(TickwiseError, match="no batch"):
        _ = message.batch


def mutate(data: st.DataObject, frames: list[bytes]) -> list[bytes]:
    """One way of breaking a message: bytes changed, frames cut short or grown, frames
    missing or added, or plain noise."""
    header, body = frames
    how = data.draw(st.sampled_from(["flip", "cut", "grow", "frames", "noise", "field"]))
    if how == "flip":
        which = data.draw(st.sampled_from([0, 1]))
        buf = bytearray(frames[which])
        if not buf:
            return [header, b"\x00"]
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(buf) - 1))
            buf[i] = data.draw(st.integers(0, 255))
        return [bytes(buf), body] if which == 0 else [header, bytes(buf)]
    if how == "cut":
        which = data.draw(st.sampled_from([0, 1]))
        keep = data.draw(st.integers(0, max(0, len(frames[which]) - 1)))
        return [header[:keep], body] if which == 0 else [header, body[:keep]]
    if how == "grow":
        extra = data.draw(st.binary(min_size=1, max_size=24))
        return [header + extra, body] if data.draw(st.booleans()) else [header, body + extra]
    if how == "frames":
        count = data.draw(st.sampled_from([0, 1, 3, 4]))
        return [*frames, body, header][:count]
    if how == "field":  # a plausible header with one field out of range
        fields = list(wire._FIXED.unpack_from(header))
        slot = data.draw(st.sampled_from([2, 3, 5, 9]))  # schema, columns, rows, body length
        fields[slot] = data.draw(st.integers(0, {2: 255, 3: 65535, 5: 2**32 - 1}.get(slot, 2**40)))
        return [wire._FIXED.pack(*fields) + header[wire._FIXED.size :], body]
    return [data.draw(st.binary(max_size=80)) for _ in range(data.draw(st.integers(0, 3)))]


@settings(max_examples=600, deadline=None)
@given(batch=batches(), data=st.data())
def test_a_malformed_message_is_refused_with_a_reason_or_decoded_within_its_frames(
    batch, data
) -> None:
    name, columns = batch
    header, body = wire.encode(name, columns, seq=5, send_ts=1)
    frames = mutate(data, [header, bytes(body)])
    try:
        message = wire.decode(frames)
    except wire.WireError as exc:
        refused = exc
    else:
        refused = None
    if refused is not None:
        assert refused.reason in wire.REASONS
        assert str(refused)
        return
    # Some changes leave a valid message (a flipped value byte): it must then be whole,
    # every column inside the body frame.
    assert len(frames) == 2
    if message.is_heartbeat:
        assert message.rows == 0
        assert not message.columns
        return
    size = len(frames[1])
    for field, column in message.columns.items():
        assert column.size == message.rows, field
        assert column.nbytes <= size, field
    assert message.batch.num_rows == message.rows


def test_bad_input_to_the_encoder_names_what_is_wrong() -> None:
    dtype = wire.DTYPES["quotes"]
    good = {n: np.zeros(3, dtype=dtype.fields[n][0]) for n in dtype.names}
    with pytest.raises(TickwiseError, match="unknown wire schema 'ticks'"):
        wire.encode("ticks", good, 1)
    with pytest.raises(TickwiseError, match=r"needs columns \['ask_sz'\]"):
        wire.encode("quotes", {k: v for k, v in good.items() if k != "ask_sz"}, 1)
    with pytest.raises(TickwiseError, match="'bid_px' has 2 values where 'ts_event' has 3"):
        wire.encode("quotes", {**good, "bid_px": np.zeros(2)}, 1)
    with pytest.raises(TickwiseError, match="seq in 0..2"):
        wire.encode("quotes", good, -1)


def test_an_arrow_batch_encodes_like_its_columns() -> None:
    dtype = wire.DTYPES["trades"]
    columns = {n: np.arange(4).astype(dtype.fields[n][0]) for n in dtype.names}
    batch = pa.RecordBatch.from_pydict(columns)
    assert (
        wire.encode("trades", batch, 3, 9)[1].tobytes()
        == wire.encode("trades", columns, 3, 9)[1].tobytes()
    )


@given(batch=batches("orders"), seq=st.integers(0, 2**64 - 1), flags=st.integers(0, 65535))
def test_orders_encode_compiled_as_they_do_column_by_column(batch, seq, flags) -> None:
    _, columns = batch
    dtype = wire.DTYPES["orders"]
    rows = np.zeros(len(columns["id"]), dtype)
    for name, values in columns.items():
        rows[name] = values
    header, body = wire.encode_orders(rows, seq, 7, flags)
    column_header, column_body = wire.encode("orders", columns, seq, 7, flags)
    assert header == column_header
    assert body.tobytes() == column_body.tobytes()


@given(batch=batches("orders"), seq=st.integers(1, 2**64 - 1))
def test_an_answer_is_its_request_with_the_columns_it_replaces(batch, seq) -> None:
    _, columns = batch
    frames = wire.encode("orders", columns, 1, 5)
    request = wire.decode([frames[0], bytes(frames[1])])
    status = np.full(request.rows, 3, np.int8)
    head, body = wire.answer([frames[0], bytes(frames[1])], seq, {"status": status},
                             wire.FLAG_REPLY, 11)  # fmt: skip
    reply = wire.decode([head, bytes(body)])
    assert (reply.seq, reply.send_ts, reply.flags, reply.rows) == (seq, 11, 1, request.rows)
    for name, values in columns.items():
        assert same_bits(reply.columns[name], status if name == "status" else values), name


def test_a_header_with_too_many_rows_is_refused() -> None:
    header, body = wire.encode("bars", {n: [] for n in wire.DTYPES["bars"].names}, 1, 1)
    fields = list(wire._FIXED.unpack_from(header))
    fields[5] = wire.MAX_ROWS + 1
    bad = wire._FIXED.pack(*fields) + header[wire._FIXED.size :]
    with pytest.raises(wire.WireError) as caught:
        wire.decode([bad, body])
    assert caught.value.reason == "rows"
    assert struct.calcsize("<2sBBHHIIQqQ") == 40  # the header's fixed part, as documented


def _spread(header: bytes, body: np.ndarray, name: str, gap: int) -> tuple[bytes, bytes]:
    """The same batch laid out its own way by another sender: each column `gap` x 8 bytes
    further on than tickwise puts it (still aligned, in order, inside the body)."""
    ncols = len(wire.DTYPES[name].names)
    offsets = struct.unpack_from(f"<{ncols}Q", header, 40)
    raw = body.tobytes()
    ends = [*offsets[1:], len(raw)]
    moved, parts = [], []
    for k, (start, end) in enumerate(zip(offsets, ends, strict=True)):
        parts.append(bytes(8 * gap))
        moved.append(start + 8 * gap * (k + 1))
        parts.append(raw[start:end])
    new_body = b"".join(parts)
    fixed = bytearray(header[:40])
    struct.pack_into("<Q", fixed, 32, len(new_body))
    return bytes(fixed) + struct.pack(f"<{ncols}Q", *moved), new_body


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(SCHEMAS), data=st.data(), gaps=st.lists(st.integers(0, 3), max_size=6))
def test_gathering_packets_gives_the_rows_of_every_message_in_order(name, data, gaps) -> None:
    """What a receiver taking many messages at once runs: one batch with every message's
    rows in order, bit for bit, whether the senders laid their columns out as tickwise does
    or their own way."""
    packets, expected = [], {field: [] for field in wire.DTYPES[name].names}
    for seq, gap in enumerate([0, *gaps]):
        _, columns = data.draw(batches(name))
        header, body = wire.encode(name, columns, seq)
        frames = [header, bytes(body)] if gap == 0 else list(_spread(header, body, name, gap))
        packets.append(wire.check(frames))
        assert packets[-1].canonical == (gap == 0)
        for field, values in columns.items():
            expected[field].append(values)
    gathered = wire.gather(packets)
    for field, parts in expected.items():
        assert same_bits(gathered[field], np.concatenate(parts)), field
