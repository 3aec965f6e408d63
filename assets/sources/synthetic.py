"""Deterministic synthetic catalogue and interaction log: the built-in demo data and a benchmark source.

Everything is a pure function of `SyntheticParams` (numpy + pyarrow only), and the log is produced in blocks of
users so that 50M events never sit in memory at once. The data carries signals a recommender can learn:

* popularity: items have a Zipf-like popularity inside their cluster and clusters have Zipf-like appeal, so
  the item counts have a long tail;
* clusters: every item has one latent cluster; users prefer one or two clusters and draw most of their
  events there, so the cluster (and the content vectors, titles, categories and brands that reveal it)
  predicts co-consumption;
* sequence: a planted successor map (one cycle through each cluster) that a user follows with probability
  `sequential_strength`, so the previous item predicts the next one beyond popularity;
* ratings: higher for items of the user's preferred clusters, plus item quality and user bias.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

USER_BLOCK = 10_000
USER_ID_PREFIX, USER_ID_WIDTH = "u", 8
ITEM_ID_PREFIX, ITEM_ID_WIDTH = "i", 7

# Independent random streams, so that e.g. changing the content dimension leaves the log unchanged.
_LAYOUT, _CONTENT, _TEXT, _USERS, _PREFS, _BLOCK, _VISUAL = range(7)
_EXPLORE = 0.1        # share of fresh draws from any cluster (by appeal), so preferences are not absolute
_PRIMARY = 0.6        # share of fresh draws from the first preferred cluster when a user has two
_DEDUPE_ROUNDS = 6    # redraws of repeated (user, item) pairs; what is left after that is a rare repeat


@dataclass(frozen=True)
class SyntheticParams:
    users: int = 2_000
    items: int = 1_000
    events: int = 40_000
    clusters: int = 20
    content_dim: int = 32
    seed: int = 0
    popularity_exponent: float = 1.1
    sequential_strength: float = 0.5
    start_date: str = "2020-01-01"
    days: int = 730

    def __post_init__(self) -> None:
        for field in ("users", "items", "events", "clusters", "content_dim", "seed", "days"):
            if not isinstance(getattr(self, field), (int, np.integer)) or isinstance(getattr(self, field), bool):
                raise ValueError(f"SyntheticParams.{field}={getattr(self, field)!r}: must be an integer")
        rules = [  # ids have a fixed width, so SQL can format them; every user needs a few events
            ("users", 1 <= self.users <= 10**USER_ID_WIDTH, f"between 1 and {10**USER_ID_WIDTH}"),
            ("items", 1 <= self.items <= 10**ITEM_ID_WIDTH, f"between 1 and {10**ITEM_ID_WIDTH}"),
            ("days", self.days >= 1, "at least 1"),
            ("events", 3 * self.users <= self.events < self.days * 86_400,
             "at least 3 * users and fewer than the seconds in `days`"),
            ("clusters", 1 <= self.clusters <= self.items, "between 1 and items"),
            ("content_dim", self.content_dim >= 1, "at least 1"),
            ("seed", self.seed >= 0, "non-negative"),
            ("popularity_exponent", 0 <= self.popularity_exponent <= 10, "between 0 and 10"),
            ("sequential_strength", 0 <= self.sequential_strength <= 1, "between 0 and 1"),
        ]
        for field, ok, rule in rules:
            if not ok:
                raise ValueError(f"SyntheticParams.{field}={getattr(self, field)!r}: must be {rule}")
        try:
            self.start_seconds
        except (TypeError, ValueError) as err:
            raise ValueError(f"SyntheticParams.start_date={self.start_date!r}: not an ISO date ({err})") from None

    @property
    def start_seconds(self) -> int:
        start = datetime.fromisoformat(self.start_date)
        return int(start.replace(tzinfo=start.tzinfo or timezone.utc).timestamp())


def user_id(index: int) -> str:
    return f"{USER_ID_PREFIX}{index:0{USER_ID_WIDTH}d}"


def item_id(index: int) -> str:
    return f"{ITEM_ID_PREFIX}{index:0{ITEM_ID_WIDTH}d}"


def _rng(p: SyntheticParams, stream: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([p.seed, stream, *more])


@dataclass(frozen=True)
class _Layout:
    cluster: np.ndarray      # int32 [items]
    start: np.ndarray        # int64 [clusters]: first slot of each cluster in `by_rank` and `cycle`
    size: np.ndarray         # int64 [clusters]
    by_rank: np.ndarray      # int64 [items]: items grouped by cluster, most popular first
    cycle: np.ndarray        # int64 [items]: items grouped by cluster in successor order
    cycle_pos: np.ndarray    # int64 [items]: slot of each item in `cycle`
    appeal: np.ndarray       # float64 [clusters]: probability that a random draw lands in each cluster
    quality: np.ndarray      # float32 [items]: rating offset


@functools.lru_cache(maxsize=4)
def _layout(p: SyntheticParams) -> _Layout:
    rng = _rng(p, _LAYOUT)
    size = 1 + rng.multinomial(p.items - p.clusters, rng.dirichlet(np.full(p.clusters, 2.0)))
    start = np.cumsum(size) - size
    # A random permutation cut into cluster-sized runs assigns items to clusters and ranks them at once.
    by_rank = rng.permutation(p.items)
    cluster = np.empty(p.items, np.int32)
    cluster[by_rank] = np.repeat(np.arange(p.clusters, dtype=np.int32), size)
    cycle = by_rank[np.lexsort((rng.random(p.items), cluster[by_rank]))]
    cycle_pos = np.empty(p.items, np.int64)
    cycle_pos[cycle] = np.arange(p.items)
    # Appeal: Zipf over clusters times their size, so popular clusters also dominate the global long tail.
    appeal = size * (1.0 + rng.permutation(p.clusters)) ** -p.popularity_exponent
    quality = rng.normal(0.0, 0.4, p.items).astype(np.float32)
    return _Layout(cluster, start, size, by_rank, cycle, cycle_pos, appeal / appeal.sum(), quality)


def item_clusters(p: SyntheticParams) -> np.ndarray:
    return _layout(p).cluster.copy()


def _advance(lay: _Layout, items: np.ndarray, steps: np.ndarray | int) -> np.ndarray:
    """The item `steps` successors after each item: O(1) because the successor map is one cycle per cluster."""
    c = lay.cluster[items]
    first, size = lay.start[c], lay.size[c]
    slot = lay.cycle_pos[items] - first + steps
    slot = np.where(slot >= size, slot - size, slot)  # int64 modulo is slow, and steps rarely pass a whole cycle
    longer = np.flatnonzero(slot >= size)
    slot[longer] %= size[longer]
    return lay.cycle[first + slot]


def successor_map(p: SyntheticParams) -> np.ndarray:
    """int64 [items]: the planted next item of each item (always in the same cluster)."""
    lay = _layout(p)
    return _advance(lay, np.arange(p.items), 1)


def _draw_clusters(lay: _Layout, rng: np.random.Generator, shape: int | tuple[int, ...]) -> np.ndarray:
    cdf = np.cumsum(lay.appeal)
    return np.minimum(np.searchsorted(cdf, rng.random(shape) * cdf[-1], side="right"), lay.size.size - 1)


def user_preferences(p: SyntheticParams) -> np.ndarray:
    """int32 [users, 2]: preferred clusters of each user; both equal for users with a single preference."""
    rng = _rng(p, _PREFS)
    pick = _draw_clusters(_layout(p), rng, (p.users, 2))
    single = rng.random(p.users) < 0.5
    pick[single, 1] = pick[single, 0]
    return pick.astype(np.int32)


def user_event_counts(p: SyntheticParams) -> np.ndarray:
    rng = _rng(p, _USERS)
    # Lomax (Pareto II) activity: most users near the minimum of 3, a capped tail of heavy users.
    weight = np.minimum(rng.pareto(1.5, p.users), 30.0)
    extra = p.events - 3 * p.users
    share = extra * weight / weight.sum()
    counts = np.floor(share).astype(np.int64)
    short = extra - int(counts.sum())  # largest remainders get the last events, so the sum is exact
    counts[np.argsort(counts - share, kind="stable")[:short]] += 1
    return counts + 3


def _zipf_rank(u: np.ndarray, n: np.ndarray, a: float) -> np.ndarray:
    """Inverse CDF of a continuous x^-a on [1, n+1): a Zipf-like rank in [0, n) without per-cluster tables."""
    if abs(a - 1.0) < 1e-9:
        x = np.exp(u * np.log(n + 1.0))
    else:
        x = (1.0 + u * ((n + 1.0) ** (1.0 - a) - 1.0)) ** (1.0 / (1.0 - a))
    return np.clip(x.astype(np.int64) - 1, 0, n - 1)


def _fresh(lay: _Layout, p: SyntheticParams, prefs: np.ndarray, user: np.ndarray,
           rng: np.random.Generator, explore: float = _EXPLORE) -> np.ndarray:
    """A popularity draw for each event of `user`: mostly from the user's clusters, sometimes from any."""
    r = rng.random(user.size)
    cluster = np.where(r < _PRIMARY, prefs[user, 0], prefs[user, 1])
    anywhere = np.flatnonzero(r >= 1.0 - explore)
    cluster[anywhere] = _draw_clusters(lay, rng, anywhere.size)
    rank = _zipf_rank(rng.random(user.size), lay.size[cluster], p.popularity_exponent)
    return lay.by_rank[lay.start[cluster] + rank]


def _resolve(lay: _Layout, follow: np.ndarray, fresh: np.ndarray) -> np.ndarray:
    """Item of every event: the successor chain k steps after the last fresh draw (a user's first event is
    always fresh, so chains never cross users)."""
    pos = np.arange(follow.size)
    anchor = np.maximum.accumulate(np.where(follow, 0, pos))
    items = fresh[anchor]
    chain = np.flatnonzero(follow)
    items[chain] = _advance(lay, items[chain], chain - anchor[chain])
    return items


def _repeats(user: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """True at every event whose (user, item) pair already occurred earlier for that user."""
    pair = (user - user[0]) * n_items + items if user.size else user
    if pair.size and int(pair.max()) < np.iinfo(np.int64).max // (pair.size + 1):
        # Unique keys (pair, position) allow a plain sort, much faster than a stable argsort.
        key = np.sort(pair * pair.size + np.arange(pair.size))
        order, pair = key % pair.size, key // pair.size
    else:
        order = np.argsort(pair, kind="stable")
        pair = pair[order]
    dup = np.zeros(items.size, bool)
    dup[order[1:]] = pair[1:] == pair[:-1]
    return dup


def _timestamps(p: SyntheticParams, counts: np.ndarray, user: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Strictly increasing seconds per user inside a random activity window, from exponential gaps."""
    span = p.days * 86_400 - counts  # room for the +1 s nudges below
    lo = (rng.random(counts.size) * span).astype(np.int64)
    width = (np.sqrt(rng.random(counts.size)) * (span - lo)).astype(np.int64)
    gaps = np.cumsum(rng.exponential(size=user.size + counts.size))
    ends = np.cumsum(counts + 1) - 1  # one spare gap per user, so the last event is not pinned to the window end
    begin = np.concatenate(([0.0], gaps[ends[:-1]]))
    slot = np.arange(user.size) + user  # skip the spare gaps
    frac = (gaps[slot] - begin[user]) / (gaps[ends] - begin)[user]
    t = lo[user] + (frac * width[user]).astype(np.int64)
    # Nudge ties apart (t_j = j + running max of t_i - i within the user), which keeps (user, item, time) unique.
    pos = np.arange(user.size)
    offset = user * (p.days * 86_400 + user.size + 1)
    return pos + np.maximum.accumulate(t - pos + offset) - offset


def _block(p: SyntheticParams, lay: _Layout, counts: np.ndarray, prefs: np.ndarray,
           block: int) -> dict[str, np.ndarray]:
    rng = _rng(p, _BLOCK, block)
    user = np.repeat(np.arange(counts.size), counts)
    follow = rng.random(user.size) < p.sequential_strength
    follow[np.cumsum(counts) - counts] = False
    fresh = _fresh(lay, p, prefs, user, rng)
    items = _resolve(lay, follow, fresh)
    redo = np.arange(user.size)  # events of the users still being checked (whole users, so chains stay whole)
    for round_ in range(_DEDUPE_ROUNDS):
        # A repeat becomes a fresh draw; the chain after it moves along with it, hence the re-resolve.
        dup = redo[_repeats(user[redo], items[redo], p.items)]
        if dup.size == 0:
            break
        follow[dup] = False
        # Heavy users can exhaust their clusters; late redraws look anywhere, so repeats stay rare.
        fresh[dup] = _fresh(lay, p, prefs, user[dup], rng, _EXPLORE if round_ < _DEDUPE_ROUNDS // 2 else 1.0)
        touched = np.zeros(counts.size, bool)
        touched[user[dup]] = True
        redo = np.flatnonzero(touched[user])
        items[redo] = _resolve(lay, follow[redo], fresh[redo])
    cluster = lay.cluster[items]
    liked = (cluster == prefs[user, 0]) | (cluster == prefs[user, 1])
    mood = rng.normal(0.0, 0.4, counts.size)[user] + rng.normal(0.0, 0.8, user.size)
    rating = np.clip(np.rint(3.0 + 1.2 * liked + lay.quality[items] + mood), 1, 5).astype(np.int8)
    return {"user_index": user + block * USER_BLOCK, "item_index": items,
            "timestamp": p.start_seconds + _timestamps(p, counts, user, rng), "rating": rating}


def interaction_batches(p: SyntheticParams, batch_events: int = 2_000_000) -> Iterator[pa.Table]:
    """The log as tables of at least `batch_events` rows (the last may be smaller), grouped by user in user
    order and in time order per user; the rows do not depend on `batch_events`."""
    if batch_events < 1:
        raise ValueError(f"batch_events={batch_events!r} must be positive")
    lay, counts, prefs = _layout(p), user_event_counts(p), user_preferences(p)
    pending: list[pa.RecordBatch] = []
    rows = 0
    for block, lo in enumerate(range(0, p.users, USER_BLOCK)):
        hi = min(lo + USER_BLOCK, p.users)
        pending.append(pa.record_batch(_block(p, lay, counts[lo:hi], prefs[lo:hi], block)))
        rows += pending[-1].num_rows
        if rows >= batch_events or hi == p.users:
            yield pa.Table.from_batches(pending)  # zero-copy: one chunk per block
            pending, rows = [], 0


#: The content modalities the synthetic catalogue supplies (it stands in for a text and an image encoder).
MODALITIES = {"text": _CONTENT, "visual": _VISUAL}


def content_vectors(p: SyntheticParams, modality: str = "text") -> np.ndarray:
    """float32 [items, content_dim]: the cluster centroid plus item noise, so content reveals the cluster.
    Each modality has its own centroids and noise."""
    if modality not in MODALITIES:
        raise ValueError(f"synthetic modality {modality!r} is not one of {sorted(MODALITIES)}")
    rng = _rng(p, MODALITIES[modality])
    centroids = rng.standard_normal((p.clusters, p.content_dim), dtype=np.float32)
    vectors = rng.standard_normal((p.items, p.content_dim), dtype=np.float32)
    vectors *= np.float32(0.8)  # in place: at 1M items each temporary is hundreds of MB
    vectors += centroids[_layout(p).cluster]
    return vectors


_SYLLABLES = pa.array("ka lo mi ra ve su ne ta ri bo la zu me no pi sa to vi ce du fa ge hi jo ku li mo na pe "
                      "qui ro se ti ul va xe yo ze an el or is".split() + [""] * 8)  # "" -> shorter words
_DEPARTMENTS = pa.array(["Skin Care", "Hair Care", "Makeup", "Fragrance", "Bath & Body", "Tools & Accessories"])
_NOUNS = pa.array("Serum Cream Lotion Cleanser Toner Mask Balm Oil Shampoo Conditioner Gel Mist Scrub Palette "
                  "Lipstick Powder Spray Tonic".split())
_SUFFIXES = pa.array(["", " Labs", " & Co", " Naturals", " Beauty", " Botanics"])
_SIZES = pa.array(["30 ml", "50 ml", "100 ml", "200 ml", "Travel Size", "Value Pack", "Refill", "Duo"])
_ADJECTIVES = pa.array("gentle rich light soothing fresh nourishing clarifying silky daily intense".split())
_AUDIENCES = pa.array(["dry skin", "oily skin", "sensitive skin", "all skin types", "daily use",
                       "night routines", "curly hair", "fine hair"])
_VOCAB, _BRANDS, _CLUSTER_NOUNS = 12, 4, 3  # words, brands and product nouns per cluster


def _pick(pool: pa.Array, index: np.ndarray) -> pa.Array:
    return pool.take(pa.array(index))


def _join(*parts: pa.Array | str, sep: str = " ") -> pa.Array:
    return pc.binary_join_element_wise(*parts, sep)


def item_table(p: SyntheticParams) -> pa.Table:
    """One row per item in index order. Text comes from small per-cluster pools picked by index (fast at 1M
    items), so the titles, brands and categories of one cluster share words."""
    rng, n, k = _rng(p, _TEXT), p.items, p.clusters
    cluster = _layout(p).cluster.astype(np.int64)

    def pseudo_words(count: int) -> pa.Array:  # two or three syllables
        s = rng.integers(0, len(_SYLLABLES), (3, count))
        s[:2] %= len(_SYLLABLES) - 8  # the first two syllables are never empty
        return _join(*(_pick(_SYLLABLES, row) for row in s), sep="")

    def options(pool: pa.Array, count: int = n) -> pa.Array:
        return _pick(pool, rng.integers(0, len(pool), count))

    vocab = pseudo_words(k * _VOCAB)  # cluster c owns vocab[c * _VOCAB:(c + 1) * _VOCAB]
    brands = _join(pc.utf8_capitalize(pseudo_words(k * _BRANDS)), options(_SUFFIXES, k * _BRANDS), sep="")
    nouns = rng.integers(0, len(_NOUNS), (k, _CLUSTER_NOUNS))
    name = _join(*(pc.utf8_capitalize(_pick(vocab, np.arange(k) * _VOCAB + j)) for j in (0, 1)))
    category = _join("Beauty", options(_DEPARTMENTS, k), name, sep=" > ")

    def word_pair() -> tuple[pa.Array, pa.Array]:  # two different words of the item's cluster
        first = rng.integers(0, _VOCAB, n)
        second = (first + rng.integers(1, _VOCAB, n)) % _VOCAB
        return _pick(vocab, cluster * _VOCAB + first), _pick(vocab, cluster * _VOCAB + second)

    brand = _pick(brands, cluster * _BRANDS + rng.integers(0, _BRANDS, n))
    noun = _pick(_NOUNS, nouns[cluster, rng.integers(0, _CLUSTER_NOUNS, n)])
    first, second = word_pair()
    title = _join(brand, pc.utf8_capitalize(first), second, noun, options(_SIZES))
    first, second = word_pair()
    description = _join("A", options(_ADJECTIVES), pc.utf8_lower(noun), "with", first, "and", second,
                        "extract, made for", _join(options(_AUDIENCES), ".", sep=""))
    digits = pc.utf8_lpad(pc.cast(pa.array(np.arange(n)), pa.string()), width=ITEM_ID_WIDTH, padding="0")
    return pa.table({"item_index": pa.array(np.arange(n, dtype=np.int64)),
                     "item_id": _join(ITEM_ID_PREFIX, digits, sep=""), "title": title,
                     "categories": _pick(category, cluster), "brand": brand, "description": description,
                     "cluster": pa.array(cluster.astype(np.int32))})
