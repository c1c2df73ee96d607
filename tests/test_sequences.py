"""Session sequences and next-item examples on a hand-built clickstream."""
from datetime import datetime

from ecomlake.deep import sequences

SCHEMA = "user_key long, event_time timestamp, event_type string, product_id long, category_code string, price double"


def ev(user, ts, event_type, product):
    return (user, datetime.fromisoformat(ts), event_type, product, "c", 1.0)


EVENTS = [
    ev(1, "2019-10-01 10:00:00", "view", 10),
    ev(1, "2019-10-01 10:01:00", "view", 10),       # immediate repeat: collapsed
    ev(1, "2019-10-01 10:02:00", "view", 20),
    ev(1, "2019-10-01 10:03:00", "cart", 20),       # cart of the same item: collapsed
    ev(1, "2019-10-01 10:04:00", "purchase", 20),   # purchases are not steps
    ev(1, "2019-10-01 10:05:00", "view", 30),
    ev(1, "2019-10-01 10:06:00", "view", 99),       # not in the vocabulary: dropped
    ev(1, "2019-10-01 12:00:00", "view", 10),       # a new session with one item: no example
    ev(2, "2019-10-01 09:00:00", "view", 20),
    ev(2, "2019-10-01 09:05:00", "view", 30),
]


def test_vocabulary_sequences_and_examples(spark):
    events = spark.createDataFrame(EVENTS, SCHEMA)
    vocabulary = sequences.item_vocabulary(events, max_items=3)
    # views: 10 x3, 20 x2, 30 x2, 99 x1 -> the top 3 get items 1..3 (sorted by product id)
    assert sorted(map(tuple, vocabulary.collect())) == [(10, 1), (20, 2), (30, 3)]
    seqs = sequences.session_sequences(events, vocabulary, gap_minutes=30)
    assert sorted((r.user_key, r.items) for r in seqs.collect()) == [(1, [1, 2, 3]), (2, [2, 3])]
    examples = sequences.next_item_examples(seqs, max_len=2)
    got = sorted((r.user_key, r.position, r.item_000, r.item_001, r.target) for r in examples.collect())
    assert got == [(1, 1, 0, 1, 2), (1, 2, 1, 2, 3), (2, 1, 0, 2, 3)]
    assert sequences.popular_items(examples, 2) == [3, 2]
    neighbours = {r.last_item: r.neighbours for r in sequences.transition_neighbours(examples, 2, 5).collect()}
    assert neighbours == {1: [2], 2: [3]}


def test_latest_session_prefix_is_the_newest_sessions_last_items(spark):
    from datetime import datetime

    seqs = spark.createDataFrame([
        (1, datetime(2019, 11, 1, 10), [5, 6]),
        (1, datetime(2019, 11, 3, 9), [7, 8, 9, 10]),    # newest: its last 3 items
        (2, datetime(2019, 11, 2, 8), [4]),              # one item: left-padded
    ], "user_key long, session_start timestamp, items array<int>")
    got = {r.user_key: (str(r.session_start), [r[sequences.item_name(i)] for i in range(3)])
           for r in sequences.latest_session_prefixes(seqs, 3).collect()}
    assert got == {1: ("2019-11-03 09:00:00", [8, 9, 10]), 2: ("2019-11-02 08:00:00", [0, 0, 4])}
