"""Landing files and quarantining bad rows, one test per kind of bad input (plus the supported formats).
Each bad row must end up in a rejected table with a reason naming the field; valid rows still land."""

from __future__ import annotations

import gzip
import json

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets.resources import CatalogueSource, FileSource
from assets.sources.landing import SourceError, land
from data_checks.rules import QualityRules, quarantine_interactions, quarantine_items
from data_checks.sql import scalar

ITEMS_CSV = "item_id,title,categories\ni1,Red lipstick,Makeup\ni2,Shampoo,Hair\ni3,Soap,Bath\n"
GOOD_EVENTS = "user_id,item_id,timestamp,rating\nu1,i1,1400000000,5\nu1,i2,1400000100,4\nu2,i3,1400000200,3\n"


def write(tmp_path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    data = content.encode() if isinstance(content, str) else content
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return str(path)


def ingest(tmp_path, events: str | bytes = GOOD_EVENTS, items: str | bytes = ITEMS_CSV, events_name="events.csv",
           items_name="items.csv", events_columns=None, items_columns=None, events_format=None, items_format=None):
    source = CatalogueSource(
        kind="files",
        interactions=FileSource(path=write(tmp_path, events_name, events), columns=events_columns or {},
                                format=events_format),
        items=FileSource(path=write(tmp_path, items_name, items), columns=items_columns or {}, format=items_format))
    con = duckdb.connect()
    land(con, source, "items")
    land(con, source, "interactions")
    quarantine_items(con)
    quarantine_interactions(con, QualityRules())
    return con


def rejected(con, table="rejected_interactions") -> list[tuple]:
    return con.execute(f"SELECT source_row, reason FROM {table} ORDER BY source_row").fetchall()


def count(con, table: str) -> int:
    return scalar(con, f"SELECT count(*) FROM {table}")


def test_clean_files_land_typed(tmp_path):
    con = ingest(tmp_path)
    assert count(con, "interactions") == 3 and count(con, "rejected_interactions") == 0
    row = con.execute("SELECT user_id, item_id, ts, rating FROM interactions ORDER BY ts LIMIT 1").fetchall()[0]
    assert row[:2] == ("u1", "i1") and str(row[2]) == "2014-05-13 16:53:20" and row[3] == 5.0
    assert scalar(con, "SELECT title FROM items WHERE item_id = 'i1'") == "Red lipstick"


def test_missing_column_names_file_and_field(tmp_path):
    with pytest.raises(SourceError, match=r"events.csv: field 'timestamp' needs column 'timestamp'.*columns: user_id, item_id"):
        ingest(tmp_path, events="user_id,item_id\nu1,i1\n")
    with pytest.raises(SourceError, match=r"field 'rating' needs column 'stars'"):
        ingest(tmp_path, events_columns={"rating": "stars"})


def test_wrong_type_values_are_rejected_with_reason(tmp_path):
    con = ingest(tmp_path, events=GOOD_EVENTS + "u3,i1,1400000300,five\nu3,i2,1400000400,4\n")
    assert rejected(con) == [(5, "rating: not a number: five")]
    assert count(con, "interactions") == 4


def test_empty_file_with_header_only(tmp_path):
    with pytest.raises(SourceError, match=r"events.csv: the file holds no data rows"):
        ingest(tmp_path, events="user_id,item_id,timestamp\n")


def test_zero_byte_file(tmp_path):
    with pytest.raises(SourceError, match=r"events.csv: the file is empty \(0 bytes\)"):
        ingest(tmp_path, events="")


def test_corrupt_gzip(tmp_path):
    broken = gzip.compress(GOOD_EVENTS.encode() * 50)[:40] + b"\x00not gzip any more" * 10
    (tmp_path / "events.csv.gz").write_bytes(broken)
    source = CatalogueSource(kind="files", interactions=FileSource(path=str(tmp_path / "events.csv.gz")),
                             items=FileSource(path=write(tmp_path, "items.csv", ITEMS_CSV)))
    with pytest.raises(SourceError, match=r"events.csv.gz: cannot read it as csv"):
        land(duckdb.connect(), source, "interactions")


def test_unparsable_timestamps(tmp_path):
    con = ingest(tmp_path, events=GOOD_EVENTS + "u3,i1,yesterday,4\nu3,i2,,4\nu3,i3,1800-01-01,2\n")
    assert rejected(con) == [(5, "timestamp: cannot parse yesterday"), (6, "timestamp: missing"),
                             (7, "timestamp: before 1990-01-01")]
    assert count(con, "interactions") == 3


def test_null_ids(tmp_path):
    con = ingest(tmp_path, events=GOOD_EVENTS + ",i1,1400000300,4\nu4,,1400000300,4\n  ,i2,1400000300,4\n")
    assert rejected(con) == [(5, "user_id: missing"), (6, "item_id: missing"), (7, "user_id: missing")]


def test_duplicate_events_keep_the_first(tmp_path):
    con = ingest(tmp_path, events=GOOD_EVENTS + "u1,i1,1400000000,2\n")
    assert rejected(con) == [(5, "duplicate event (user_id, item_id, timestamp)")]
    assert con.execute("SELECT rating FROM interactions WHERE user_id='u1' AND item_id='i1'").fetchall() == [(5.0,)]


def test_ratings_out_of_range(tmp_path):
    con = ingest(tmp_path, events=GOOD_EVENTS + "u3,i1,1400000300,6\nu3,i2,1400000300,0\nu3,i3,1400000300,\n")
    assert rejected(con) == [(5, "rating: outside 1.0 .. 5.0"), (6, "rating: outside 1.0 .. 5.0")]
    assert con.execute("SELECT rating FROM interactions WHERE user_id='u3'").fetchall() == [(None,)]


def test_interactions_on_unknown_items(tmp_path):
    con = ingest(tmp_path, events=GOOD_EVENTS + "u3,i999,1400000300,4\n")
    assert rejected(con) == [(5, "item_id: not in the catalogue (items)")]


def test_non_utf8_title_is_rejected_and_kept(tmp_path):
    items = ITEMS_CSV.encode() + b"i4,Cr\xe8me br\xfbl\xe9e,Bath\ni5,Plain,Bath\n"
    con = ingest(tmp_path, items=items)
    (row, reason), = rejected(con, "rejected_items")
    assert row == 5 and "INVALID ENCODING in title" in reason
    assert scalar(con, "SELECT raw_line FROM rejected_items").startswith("i4,Cr")
    assert count(con, "items") == 4 and count(con, "raw_items") == 5


def test_wrong_column_count_is_rejected_with_line(tmp_path):
    con = ingest(tmp_path, events=GOOD_EVENTS + "u3,i1\nu3,i2,1400000400,4\nu4,i1,1400000500,4,extra\nu4,i2,1400000600,4\n")
    assert [(r, reason.split(":")[0]) for r, reason in rejected(con)] == [
        (5, "unreadable record"), (7, "unreadable record")]
    rows = con.execute("SELECT user_id, item_id, source_row FROM interactions WHERE user_id IN ('u3','u4')").fetchall()
    assert sorted(rows) == [("u3", "i2", 6), ("u4", "i2", 8)]  # good rows keep their true line numbers


def test_duplicate_and_missing_item_ids(tmp_path):
    con = ingest(tmp_path, items=ITEMS_CSV + "i1,Other lipstick,Makeup\n,No id,Bath\n")
    assert rejected(con, "rejected_items") == [(5, "item_id: duplicate of an earlier row"), (6, "item_id: missing")]
    assert scalar(con, "SELECT title FROM items WHERE item_id='i1'") == "Red lipstick"


def test_counts_are_conserved(tmp_path):
    con = ingest(tmp_path, events=GOOD_EVENTS + ",i1,1,1\nu9,i9,abc,9\nu1,i1,1400000000,5\n")
    assert count(con, "raw_interactions") == count(con, "interactions") + count(con, "rejected_interactions") == 6


def test_column_mapping_and_millisecond_iso_timestamps(tmp_path):
    events = "who,what,when\nu1,i1,1400000000000\nu2,i2,2014-05-13T16:53:20Z\n"
    con = ingest(tmp_path, events=events, events_columns={"user_id": "who", "item_id": "what", "timestamp": "when"})
    assert [str(t) for (t,) in con.execute("SELECT ts FROM interactions ORDER BY user_id").fetchall()] == [
        "2014-05-13 16:53:20", "2014-05-13 16:53:20"]


def test_parquet_and_tsv(tmp_path):
    table = pa.table(
        {"user_id": ["u1", "u2"], "item_id": ["i1", "i2"], "timestamp": [1400000000, 1400000001], "rating": [5, 2]})
    pq.write_table(table, tmp_path / "events.parquet")
    source = CatalogueSource(kind="files", interactions=FileSource(path=str(tmp_path / "events.parquet")),
                             items=FileSource(path=write(tmp_path, "items.tsv", ITEMS_CSV.replace(",", "\t"))))
    con = duckdb.connect()
    land(con, source, "items")
    land(con, source, "interactions")
    quarantine_items(con)
    quarantine_interactions(con, QualityRules())
    assert count(con, "items") == 3
    assert con.execute("SELECT user_id, rating, source_row FROM interactions ORDER BY user_id").fetchall() == [
        ("u1", 5.0, 1), ("u2", 2.0, 2)]


def test_jsonl_with_a_malformed_line(tmp_path):
    lines = [json.dumps({"user_id": "u1", "item_id": "i1", "timestamp": 1400000000, "extra": [1, 2]}),
             "{not json", json.dumps({"user_id": "u2", "item_id": "i2", "timestamp": "2014-05-13"})]
    con = ingest(tmp_path, events="\n".join(lines) + "\n", events_name="events.jsonl.gz")
    assert rejected(con) == [(2, "unreadable record: malformed JSON line")]
    assert count(con, "interactions") == 2


def test_amazon_2014_reviews_and_python_literal_meta(tmp_path):
    reviews = [{"reviewerID": "A1", "asin": "B01", "overall": 5.0, "unixReviewTime": 1400000000},
               {"reviewerID": "A2", "asin": "B02", "overall": 3.0, "unixReviewTime": 1400000500}]
    meta = ("{'asin': 'B01', 'title': 'Nail \\'polish\\'', 'categories': [['Beauty', 'Makeup', 'Nails']], 'brand': 'X'}\n"
            "{'asin': 'B02', 'categories': [['Beauty'], ['Beauty', 'Hair']], 'salesRank': {'Beauty': 12}}\n"
            "__import__('os').system('echo never runs')\n")
    con = ingest(tmp_path, events="\n".join(json.dumps(r) for r in reviews) + "\n", events_name="reviews_Beauty_5.json.gz",
                 events_format="amazon_reviews", items=meta, items_name="meta_Beauty.json.gz", items_format="amazon_meta")
    assert con.execute("SELECT item_id, title, categories, brand FROM items ORDER BY item_id").fetchall() == [
        ("B01", "Nail 'polish'", "Beauty > Makeup > Nails", "X"), ("B02", None, "Beauty | Beauty > Hair", None)]
    assert rejected(con, "rejected_items") == [(3, "unreadable record: not a Python literal: ValueError")]
    assert con.execute("SELECT user_id, rating FROM interactions ORDER BY user_id").fetchall() == [
        ("A1", 5.0), ("A2", 3.0)]
