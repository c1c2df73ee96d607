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


def _sessions(spark, rows):
    return spark.createDataFrame(
        [(u, datetime.fromisoformat(t), items) for u, t, items in rows],
        "user_key long, session_start timestamp, items array<int>")


def test_user_history_is_the_last_items_of_the_earlier_sessions_only(spark):
    seqs = _sessions(spark, [
        (1, "2019-10-01 10:00:00", [1, 2]),
        (1, "2019-10-02 10:00:00", [3]),
        (1, "2019-10-03 10:00:00", [4, 5, 6]),
        (1, "2019-10-04 10:00:00", [7, 8]),
        (2, "2019-10-01 09:00:00", [9, 1]),
    ])
    with_history = sequences.with_user_history(seqs, history_len=3)
    got = {(r.user_key, r.items[0]): r.history for r in with_history.collect()}
    assert got == {(1, 1): [], (1, 3): [1, 2], (1, 4): [1, 2, 3], (1, 7): [4, 5, 6], (2, 9): []}
    assert {r.user_key: r.history for r in sequences.history_at_end(seqs, 3).collect()} == {1: [6, 7, 8], 2: [9, 1]}

    examples = sequences.next_item_examples(with_history, max_len=2, history_len=3)
    got = sorted((r.user_key, r.session_start.day, r.position, r.hist_000, r.hist_001, r.hist_002,
                  r.item_000, r.item_001, r.target) for r in examples.collect())
    assert got == [
        (1, 1, 1, 0, 0, 0, 0, 1, 2),
        (1, 3, 1, 1, 2, 3, 0, 4, 5),
        (1, 3, 2, 1, 2, 3, 4, 5, 6),
        (1, 4, 1, 4, 5, 6, 0, 7, 8),
        (2, 1, 1, 0, 0, 0, 0, 9, 1),
    ]
    newest = {r.user_key: (r.hist_000, r.hist_001, r.hist_002, r.item_000, r.item_001)
              for r in sequences.latest_session_prefixes(with_history, 2, history_len=3).collect()}
    assert newest == {1: (4, 5, 6, 7, 8), 2: (0, 0, 0, 9, 1)}


def test_movielens_attention_trains_on_the_seen_ratings_and_holds_out_each_users_last(spark, tmp_path, monkeypatch):
    """The split of `train movielens_sequential`: the last rating (equal times: the higher movie id
    is last) is the target; every earlier position is a training example; the user's rated movies
    are excluded from the ranking; a held-out movie nobody rated before cannot be predicted (-1)."""
    from ecomlake.deep import tasks
    from ecomlake.deep.runner import FrameCache

    t = lambda day: datetime(1998, 1, day)  # noqa: E731
    ratings = spark.createDataFrame(
        [(1, 10, 4, t(1)), (1, 20, 3, t(2)), (1, 30, 5, t(3)), (1, 40, 2, t(4)),
         (2, 20, 4, t(1)), (2, 50, 4, t(2)), (2, 10, 1, t(3)), (2, 5, 1, t(3))],
        "user_id long, item_id long, rating int, rated_at timestamp")
    monkeypatch.setattr(tasks.lake, "read_table", lambda *args: ratings)
    task = tasks.MovieLensAttention(max_len=2)
    cache = FrameCache()
    try:
        prepared = task.prepare(spark, {"lake_root": str(tmp_path)}, None, {}, str(tmp_path / "m"), 2, cache)
        # seen: user 1 [10, 20, 30], user 2 [20, 50, 5] (10 held out: equal time, higher id) -> ids 5:1 10:2 20:3 30:4 50:5
        assert prepared.train_rows == 4 and prepared.spec["vocabulary_size"] == 5
        train = spark.read.parquet(str(tmp_path / "m" / "data" / "train"))
        assert sorted((r.user_key, r.item_000, r.item_001, r.target) for r in train.collect()) == [
            (1, 0, 2, 3), (1, 2, 3, 4), (2, 0, 3, 5), (2, 3, 5, 1)]
        test = sorted((r.user_key, r.item_000, r.item_001, r.target, r.exclude)
                      for r in prepared.frames["test"].collect())
        assert test == [(1, 3, 4, -1, [2, 3, 4]), (2, 5, 1, 2, [3, 5, 1])]
    finally:
        cache.release()
