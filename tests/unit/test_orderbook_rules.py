"""The order-by-order book's documented rules, one case each (docs/data.md, Order-by-order)."""

from __future__ import annotations

import numpy as np

from tickwise.feeds import book_kernels as bk
from tickwise.feeds.orderbook import OrderBooks


def _run(*rows: tuple) -> tuple[OrderBooks, list]:
    """Apply (action, side, order id, price, size[, last]) messages to one instrument."""
    msgs = np.zeros(len(rows), dtype=bk.MBO_DTYPE)
    for k, row in enumerate(rows):
        act, side, oid, px, qty, *last = row
        msgs[k] = (
            10 + k,
            20 + k,
            0,
            oid,
            px,
            qty,
            act,
            side,
            bk.IN_LAST if (last[0] if last else True) else 0,
        )
    books = OrderBooks()
    return books, [m.copy() for m in books.apply(msgs)]


def _all(made: list, name: str) -> np.ndarray:
    return np.concatenate([getattr(m, name) for m in made])


def _book(books: OrderBooks) -> tuple[list, list]:
    bids = list(zip(*(a.tolist() for a in books.levels(0, 1)), strict=True))
    asks = list(zip(*(a.tolist() for a in books.levels(0, -1)), strict=True))
    return bids, asks


def test_deleting_an_unknown_order_is_noted_and_changes_nothing() -> None:
    books, made = _run((bk.ACT_ADD, 1, 1, 100, 5), (bk.ACT_DELETE, 0, 99, 0, 0))
    assert _book(books) == ([(100, 5)], [])
    notes = _all(made, "notes")
    assert notes["code"].tolist() == [bk.NOTE_UNKNOWN_ORDER]
    assert notes["row"].tolist() == [1]
    assert _all(made, "deltas")["row"].tolist() == [0]  # (no delta for the unknown order)


def test_modifying_to_size_zero_removes_the_order() -> None:
    books, made = _run(
        (bk.ACT_ADD, 1, 1, 100, 5), (bk.ACT_ADD, 1, 2, 100, 3), (bk.ACT_MODIFY, 1, 1, 100, 0)
    )
    assert _book(books) == ([(100, 3)], [])
    last = _all(made, "deltas")[-1]
    assert (last["px"], last["qty"]) == (100, 3)
    assert books.resting()["order_id"].tolist() == [2]


def test_a_modify_of_an_unknown_order_adds_it_and_a_new_price_moves_it() -> None:
    books, _ = _run((bk.ACT_MODIFY, -1, 7, 105, 4), (bk.ACT_MODIFY, -1, 7, 104, 6))
    assert _book(books) == ([], [(104, 6)])


def test_a_fill_takes_from_the_resting_order_and_prints_at_its_price() -> None:
    books, made = _run(
        (bk.ACT_ADD, -1, 1, 101, 5), (bk.ACT_FILL, 0, 1, 0, 2), (bk.ACT_FILL, 0, 1, 0, 9)
    )
    trades = _all(made, "trades")
    # The aggressor was a buyer (+1); the second fill takes only the 3 left.
    assert [tuple(int(t[c]) for c in ("px", "qty", "side")) for t in trades] == [
        (101, 2, 1),
        (101, 3, 1),
    ]
    assert _book(books) == ([], [])


def test_a_trade_prints_and_leaves_the_book_alone() -> None:
    books, made = _run((bk.ACT_ADD, -1, 1, 101, 5), (bk.ACT_TRADE, 1, 0, 101, 2))
    assert _book(books) == ([], [(101, 5)])
    trades = _all(made, "trades")
    assert [tuple(int(t[c]) for c in ("px", "qty", "side")) for t in trades] == [(101, 2, 1)]


def test_a_crossed_book_loses_the_stale_levels_against_the_newest_order() -> None:
    # Asks at 101 and 102 rest; a bid at 102 arrives (their cancels were lost): both asks
    # at or below it are stale and go, the bid stays, and the repair is noted with its row.
    books, made = _run(
        (bk.ACT_ADD, -1, 1, 101, 5),
        (bk.ACT_ADD, -1, 2, 102, 5),
        (bk.ACT_ADD, -1, 3, 103, 5),
        (bk.ACT_ADD, 1, 4, 102, 1),
    )
    assert _book(books) == ([(102, 1)], [(103, 5)])
    notes = _all(made, "notes")
    assert (notes["code"].tolist(), notes["row"].tolist(), notes["count"].tolist()) == (
        [bk.NOTE_CROSSED],
        [3],
        [2],
    )
    # The removed orders no longer rest: a late cancel of one is an unknown order.
    books2, made2 = _run(
        (bk.ACT_ADD, 1, 4, 100, 1), (bk.ACT_ADD, -1, 1, 99, 5), (bk.ACT_CANCEL, 0, 4, 0, 1)
    )
    assert _book(books2) == ([], [(99, 5)])
    assert _all(made2, "notes")["code"].tolist() == [bk.NOTE_CROSSED, bk.NOTE_UNKNOWN_ORDER]


def test_a_locked_book_is_repaired_from_either_side() -> None:
    books, _ = _run((bk.ACT_ADD, -1, 1, 101, 5), (bk.ACT_ADD, 1, 2, 101, 1))
    assert _book(books) == ([(101, 1)], [])
    books, _ = _run((bk.ACT_ADD, 1, 1, 101, 5), (bk.ACT_ADD, -1, 2, 101, 1))
    assert _book(books) == ([], [(101, 1)])


def test_a_book_crossed_within_an_event_is_left_until_the_event_ends() -> None:
    books, made = _run(
        (bk.ACT_ADD, -1, 1, 101, 5), (bk.ACT_ADD, 1, 2, 101, 1, False), (bk.ACT_CANCEL, 0, 1, 0, 5)
    )
    assert _book(books) == ([(101, 1)], [])
    assert _all(made, "notes").size == 0


def test_a_clear_removes_every_level_with_a_delta_each() -> None:
    books, made = _run(
        (bk.ACT_ADD, 1, 1, 100, 5),
        (bk.ACT_ADD, 1, 2, 99, 5),
        (bk.ACT_ADD, -1, 3, 101, 5),
        (bk.ACT_CLEAR, 0, 0, 0, 0),
        (bk.ACT_ADD, 1, 1, 98, 2),
    )
    assert _book(books) == ([(98, 2)], [])
    deltas = _all(made, "deltas")
    cleared = deltas[deltas["row"] == 3]
    assert sorted(tuple(int(d[c]) for c in ("side", "px", "qty")) for d in cleared) == [
        (-1, 101, 0),
        (1, 99, 0),
        (1, 100, 0),
    ]
    assert books.resting()["order_id"].tolist() == [1]


def test_a_quote_is_made_only_when_the_top_changes_and_both_sides_have_a_level() -> None:
    _, made = _run(
        (bk.ACT_ADD, 1, 1, 100, 5),
        (bk.ACT_ADD, -1, 2, 101, 5),
        (bk.ACT_ADD, 1, 3, 99, 5),
        (bk.ACT_ADD, 1, 4, 100, 1),
    )
    quotes = _all(made, "quotes")
    shown = [
        tuple(int(q[c]) for c in ("row", "bid_px", "ask_px", "bid_qty", "ask_qty")) for q in quotes
    ]
    assert shown == [(1, 100, 101, 5, 5), (3, 100, 101, 6, 5)]


def test_the_tables_grow_past_their_first_size_without_losing_an_order() -> None:
    n = 100_000  # (the order table starts at 4,096 slots, each level row at 16)
    msgs = np.zeros(n, dtype=bk.MBO_DTYPE)
    msgs["ts_event"] = np.arange(n)
    msgs["order_id"] = np.arange(1, n + 1)
    msgs["px"] = 1000 + np.arange(n) % 500
    msgs["qty"] = 1
    msgs["action"] = bk.ACT_ADD
    msgs["side"] = 1
    msgs["flags"] = bk.IN_LAST
    books = OrderBooks(out_rows=1000)
    made = [m.copy() for m in books.apply(msgs)]
    px, qty = books.levels(0, 1)
    assert px.size == 500
    assert qty.tolist() == [200] * 500
    assert books.resting().size == n
    assert sum(m.deltas.size for m in made) == n


def test_one_message_with_three_notes_fits_the_smallest_buffers() -> None:
    # A crossed book (no event end yet), then a duplicate add with no side that ends the
    # event: a duplicate, a missing side and a repair, three notes from one message.
    msgs = np.zeros(3, dtype=bk.MBO_DTYPE)
    msgs[0] = (1, 1, 0, 1, 100, 1, bk.ACT_ADD, 1, 0)
    msgs[1] = (2, 2, 0, 2, 99, 1, bk.ACT_ADD, -1, 0)
    msgs[2] = (3, 3, 0, 1, 100, 1, bk.ACT_ADD, 0, bk.IN_LAST)
    books = OrderBooks(out_rows=8)
    made = [m.copy() for m in books.apply(msgs)]
    notes = _all(made, "notes")
    assert notes["code"].tolist() == [bk.NOTE_DUPLICATE_ADD, bk.NOTE_NO_SIDE, bk.NOTE_CROSSED]


def test_an_update_still_open_when_the_stream_ends_is_closed_flagged() -> None:
    books, made = _run((bk.ACT_ADD, 1, 1, 100, 5, False), (bk.ACT_ADD, 1, 2, 99, 5, False))
    assert not (_all(made, "deltas")["flags"] & bk.OUT_LAST).any()
    closing = [m.copy() for m in books.finish()]
    deltas = _all(closing, "deltas")
    assert [(int(d["px"]), int(d["qty"]), int(d["flags"])) for d in deltas] == [
        (99, 5, bk.OUT_LAST)
    ]
    assert list(books.finish()) == []  # (nothing is left open)
