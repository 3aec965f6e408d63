"""The splits SQL on hand-made interactions: leave-one-out positions and an exact chronological cut when
many events share the boundary timestamp."""

from __future__ import annotations

import duckdb
import pytest

from assets.validated import SPLITS_SQL
from data_checks.rules import SEQUENCE_ORDER


def make_splits(rows: list[tuple], train_fraction: float = 0.9, min_events: int = 3):
    con = duckdb.connect()
    con.execute("""CREATE TABLE landed (user_id VARCHAR, item_id VARCHAR, ts TIMESTAMP, rating DOUBLE,
                   event_order BIGINT, source_row BIGINT)""")
    con.executemany("INSERT INTO landed VALUES (?, ?, to_timestamp(?)::TIMESTAMP, NULL, ?, ?)", rows)
    # as the quarantine writes it: in sequence order
    con.execute(f"CREATE TABLE interactions AS SELECT * FROM landed ORDER BY {SEQUENCE_ORDER}")
    con.execute(SPLITS_SQL, {"min_events": min_events, "train_fraction": train_fraction})
    return con


@pytest.mark.parametrize("fraction", [0.5, 0.8, 0.9, 0.95])
def test_chronological_cut_is_exact_with_ties(fraction):
    # 20 events; 10 of them at the same timestamp in the middle.
    rows = [(f"u{i % 4}", f"i{i}", 100 if 5 <= i < 15 else i, None, i) for i in range(20)]
    con = make_splits(rows, train_fraction=fraction)
    train = con.execute("SELECT count(*) FROM splits WHERE chrono_split = 'train'").fetchall()[0][0]
    assert train == int(20 * fraction)
    # Every train event is no later than every test event.
    latest_train, earliest_test = con.execute("""SELECT max(ts) FILTER (chrono_split = 'train'),
                                                 min(ts) FILTER (chrono_split = 'test') FROM splits""").fetchall()[0]
    assert latest_train <= earliest_test


def test_leave_one_out_orders_ties_by_event_order():
    rows = [("u1", "a", 10, 2, 1), ("u1", "b", 10, 1, 2), ("u1", "c", 5, None, 3), ("u1", "d", 20, None, 4),
            ("u2", "a", 1, None, 5), ("u2", "b", 2, None, 6)]
    con = make_splits(rows)
    got = con.execute("SELECT user_id, item_id, seq_pos, loo_split FROM splits ORDER BY user_id, seq_pos").fetchall()
    assert got == [("u1", "c", 0, "train"), ("u1", "b", 1, "train"), ("u1", "a", 2, "valid"), ("u1", "d", 3, "test"),
                   ("u2", "a", 0, "train"), ("u2", "b", 1, "train")]
