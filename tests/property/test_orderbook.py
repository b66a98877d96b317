"""The compiled order-by-order book against the documented rules, at every event."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.vendor_files import ReferenceBook
from tickwise.feeds import book_kernels as bk
from tickwise.feeds.orderbook import OrderBooks

ACTIONS = [
    bk.ACT_ADD,
    bk.ACT_ADD,
    bk.ACT_ADD,
    bk.ACT_CANCEL,
    bk.ACT_DELETE,
    bk.ACT_MODIFY,
    bk.ACT_FILL,
    bk.ACT_TRADE,
    bk.ACT_CLEAR,
    bk.ACT_NONE,
]

message = st.tuples(
    st.integers(0, 1),  # instrument
    st.sampled_from(ACTIONS),
    st.sampled_from([1, 1, -1, -1, 0]),  # side (0: none, which adds must not have)
    st.integers(1, 12),  # order id: few, so that ids are reused, unknown and duplicated
    st.integers(-1, 9),  # price in ticks: a narrow band, so that books cross
    st.integers(-1, 6),  # size
    st.booleans(),  # the venue's end of an event (the book is looked at only there)
)


def _msgs(stream: list[tuple]) -> np.ndarray:
    out = np.zeros(len(stream), dtype=bk.MBO_DTYPE)
    for k, (inst, act, side, oid, px, qty, last) in enumerate(stream):
        out[k] = (
            1000 + k,
            2000 + k,
            inst,
            oid,
            px * 250,
            qty,
            act,
            side,
            bk.IN_LAST if last else 0,
        )
    return out


def _l2(book: dict, deltas: np.ndarray) -> None:
    for d in deltas:
        key = (int(d["inst"]), int(d["side"]), int(d["px"]))
        if d["qty"]:
            book[key] = int(d["qty"])
        else:
            book.pop(key, None)


@settings(max_examples=150, deadline=None)
@given(st.lists(message, min_size=1, max_size=80))
def test_the_book_equals_the_rules_and_its_live_orders_at_every_event(stream) -> None:
    msgs = _msgs(stream)
    books = OrderBooks(out_rows=16)  # (small buffers: flushing mid-stream is exercised too)
    refs = [ReferenceBook(), ReferenceBook()]
    l2: dict = {}
    notes: list[list[int]] = [[], []]
    trades: list[list[tuple]] = [[], []]
    for k, (inst, act, side, oid, px, qty, last) in enumerate(stream):
        made = [m.copy() for m in books.apply(msgs[k : k + 1])]
        refs[inst].apply(act, side, oid, px * 250, qty, last)
        for m in made:
            _l2(l2, m.deltas)
            notes[inst] += m.notes["code"].tolist()
            trades[inst] += [(int(t["px"]), int(t["qty"]), int(t["side"])) for t in m.trades]
        resting = books.resting()
        for i in (0, 1):
            for s in (1, -1):
                px_, qty_ = books.levels(i, s)
                levels = list(zip(px_.tolist(), qty_.tolist(), strict=True))
                assert levels == refs[i].levels(s), (k, i, s)
                live: dict[int, int] = {}  # (rebuilt from every order still resting)
                for o in resting[(resting["inst"] == i) & (resting["side"] == s)]:
                    live[int(o["px"])] = live.get(int(o["px"]), 0) + int(o["qty"])
                assert levels == sorted(live.items(), reverse=s == 1)
                assert levels == sorted(
                    ((p, q) for (ii, ss, p), q in l2.items() if ii == i and ss == s), reverse=s == 1
                )
    for i in (0, 1):
        assert notes[i] == refs[i].notes
        assert trades[i] == refs[i].trades


@settings(max_examples=60, deadline=None)
@given(st.lists(message, min_size=1, max_size=120), st.data())
def test_what_the_books_make_does_not_depend_on_the_chunks(stream, data) -> None:
    msgs = _msgs(stream)
    whole = OrderBooks()
    one = [m.copy() for m in whole.apply(msgs)]
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(stream)), max_size=6))))
    parts = OrderBooks(out_rows=8)
    pieces = []
    at = 0
    for cut in [*cuts, len(stream)]:
        pieces += [m.copy() for m in parts.apply(msgs[at:cut])]
        at = cut
    for name in ("quotes", "trades", "notes"):
        a = np.concatenate([getattr(m, name) for m in one]) if one else []
        b = np.concatenate([getattr(m, name) for m in pieces]) if pieces else []
        assert np.array_equal(a, b), name
    # Deltas may repeat the last of an update when it was handed out before the update
    # ended; the book they build is the same.
    book_a: dict = {}
    book_b: dict = {}
    for m in one:
        _l2(book_a, m.deltas)
    for m in pieces:
        _l2(book_b, m.deltas)
    assert book_a == book_b


@settings(max_examples=100, deadline=None)
@given(st.lists(message, min_size=1, max_size=80))
def test_quotes_are_the_top_of_book_where_it_changed_and_updates_end_flagged(stream) -> None:
    msgs = _msgs(stream)
    books = OrderBooks(out_rows=16)
    refs = [ReferenceBook(), ReferenceBook()]
    last_top: list = [None, None]
    expected: list[tuple] = []
    quotes: list[tuple] = []
    unflagged = {0: 0, 1: 0}  # deltas of an instrument's update not yet closed by a flag
    for k, (inst, act, side, oid, px, qty, last) in enumerate(stream):
        made = [m.copy() for m in books.apply(msgs[k : k + 1])]
        refs[inst].apply(act, side, oid, px * 250, qty, last)
        for m in made:
            quotes += [
                (
                    int(q["row"]),
                    int(q["inst"]),
                    int(q["bid_px"]),
                    int(q["ask_px"]),
                    int(q["bid_qty"]),
                    int(q["ask_qty"]),
                )
                for q in m.quotes
            ]
            for d in m.deltas:
                flagged = bool(d["flags"] & bk.OUT_LAST)
                assert not flagged or (d["row"] == k and last)  # (only where an event ends)
                unflagged[int(d["inst"])] = 0 if flagged else unflagged[int(d["inst"])] + 1
        if last:
            assert unflagged[inst] == 0, k  # (an update that moved a level ends flagged)
            top = refs[inst].top()
            if top is not None and top != last_top[inst]:
                expected.append((k, inst, *top))
            last_top[inst] = top
    assert quotes == expected


def _wide(seed: int, n: int) -> list[tuple]:
    """A long random stream over many ids and prices, bids below asks so that books grow deep
    (too big for Hypothesis to build and shrink item by item: drawn from a seed it chooses).
    Its order table fills, sheds tombstones and grows; its level rows outgrow their room and
    the pool is compacted."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        side = int(rng.choice([1, -1, 1, -1, 0]))
        px = int(rng.integers(1, 201)) if side == 1 else int(rng.integers(201, 401))
        act = int(
            rng.choice(
                [
                    *[bk.ACT_ADD] * 6,
                    bk.ACT_CANCEL,
                    bk.ACT_DELETE,
                    bk.ACT_MODIFY,
                    bk.ACT_FILL,
                    bk.ACT_TRADE,
                    bk.ACT_NONE,
                ]
            )
        )
        if rng.random() < 0.001:
            act = bk.ACT_CLEAR
        out.append(
            (
                int(rng.integers(0, 3)),
                act,
                side,
                int(rng.integers(1, 4001)),
                px,
                int(rng.integers(0, 7)),
                bool(rng.integers(0, 2)),
            )
        )
    return out


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(500, 6000))
def test_the_book_survives_its_tables_growing_and_being_rebuilt(seed, n) -> None:
    stream = _wide(seed, n)
    msgs = _msgs(stream)
    books = OrderBooks(out_rows=64)
    refs = [ReferenceBook(), ReferenceBook(), ReferenceBook()]
    notes: list[list[int]] = [[], [], []]
    for at in range(0, len(stream), 700):  # (chunks: state carried from call to call)
        for made in books.apply(msgs[at : at + 700]):
            for code, inst in zip(made.notes["code"].tolist(), made.notes["inst"].tolist(),
                                  strict=True):  # fmt: skip
                notes[inst].append(code)
    for inst, act, side, oid, px, qty, last in stream:
        refs[inst].apply(act, side, oid, px * 250, qty, last)
    for i in range(3):
        for s in (1, -1):
            px_, qty_ = books.levels(i, s)
            assert list(zip(px_.tolist(), qty_.tolist(), strict=True)) == refs[i].levels(s)
        assert notes[i] == refs[i].notes
    resting = books.resting()
    assert sorted(zip(resting["inst"].tolist(), resting["order_id"].tolist(), strict=True)) == (
        sorted((i, oid) for i in range(3) for oid in refs[i].orders)
    )
