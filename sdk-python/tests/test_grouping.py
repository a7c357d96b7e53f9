"""GroupByKey, combiners, Flatten, Partition, Reshuffle, Distinct, keys and
joins: same output on Beam and Oxbeam."""

import pytest

WORDS = ["a", "b", "a", "c", "b", "a"]
PAIRS = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("a", 5)]


def test_group_by_key(B):
    with B.pipeline() as p:
        out = (
            p | B.beam.Create(PAIRS) | B.beam.GroupByKey()
            | B.beam.MapTuple(lambda k, vs: (k, sorted(vs)))
        )
        B.assert_that(out, B.equal_to([("a", [1, 3, 5]), ("b", [2]), ("c", [4])]))


def test_group_by_key_untyped_input(B):
    with B.pipeline() as p:
        out = (
            p | B.beam.Create(WORDS) | B.beam.Map(lambda w: (w, len(w) * 2))
            | B.beam.GroupByKey() | B.beam.MapTuple(lambda k, vs: (k, sum(vs)))
        )
        B.assert_that(out, B.equal_to([("a", 6), ("b", 4), ("c", 2)]))


def test_group_by_tuple_keys(B):
    with B.pipeline() as p:
        out = (
            p | B.beam.Create([((1, "x"), 1), ((1, "x"), 2), ((2, "y"), 3)])
            | B.beam.GroupByKey() | B.beam.MapTuple(lambda k, vs: (k, sorted(vs)))
        )
        B.assert_that(out, B.equal_to([((1, "x"), [1, 2]), ((2, "y"), [3])]))


def test_combine_per_key_sum(B):
    with B.pipeline() as p:
        out = p | B.beam.Create(PAIRS) | B.beam.CombinePerKey(sum)
        B.assert_that(out, B.equal_to([("a", 9), ("b", 2), ("c", 4)]))


def test_combine_per_key_sum_of_mixed_numbers(B):
    # Ints, floats and bools add as Python's `sum` adds them.
    pairs = [("i", 2), ("f", 0.5), ("i", 3), ("f", 1), ("b", True), ("b", True), ("n", -7)]
    with B.pipeline() as p:
        out = p | B.beam.Create(pairs) | B.beam.CombinePerKey(sum)
        B.assert_that(out, B.equal_to([("i", 5), ("f", 1.5), ("b", 2), ("n", -7)]))


def test_sum_into_stops_where_python_would_raise():
    # The precombine of CombinePerKey(sum) adds pairs in C and leaves the
    # pair it cannot add to the interpreter's loop, which raises on it.
    from oxbeam._oxbeam import sum_into

    table = {"a": 1}
    assert sum_into(table, [("a", 2), ("b", 3), ("a", 1.5)]) == 3
    assert table == {"a": 4.5, "b": 3}
    assert sum_into(table, [("b", 1), "not a pair", ("b", 1)]) == 1
    assert sum_into(table, [("c", 1), ("a", "x")]) == 1
    assert sum_into(table, [("c", 1), ("c", 2, 3)]) == 1
    assert sum_into(table, [([], 1)]) == 0  # unhashable key
    assert table == {"a": 4.5, "b": 4, "c": 2}


def test_sum_table_adds_as_python_does_and_leaves_the_rest():
    # The precombine of CombinePerKey(sum) and Count.PerKey keeps str/int
    # keys with int/float sums in a Rust table; at the first pair it does
    # not take (another key type, a bool, a big int, a sum past 64 bits)
    # the caller moves it into its dict and goes on there. Whatever the
    # pairs, the outcome is Python's own loop's, types included.
    import random

    from oxbeam._oxbeam import SumTable

    t = SumTable()
    pairs = [("a", 1), ("b", 2.5), ("a", 3), (5, 1), (5, 2), ("é€😀", 1),
             ("ü", 2), ("", 7), (-1, 1), (-(2**63), 1), ("a", -0.0), ("u", 1)]
    assert t.add(pairs) == len(pairs)
    assert len(t) == 9
    assert sorted(t.take_items(), key=repr) == sorted(
        [("a", 4.0), ("b", 2.5), (5, 3), ("é€😀", 1), ("ü", 2), ("", 7),
         (-1, 1), (-(2**63), 1), ("u", 1)], key=repr)
    assert len(t) == 0
    # Not taken, nothing changed: a bool (1 == True merges keys in a dict),
    # a big int, a sum past 64 bits, not a 2-tuple, a str with no UTF-8 (a
    # lone surrogate).
    assert t.add([("x", 2**63 - 1), ("x", 1)]) == 1
    for bad in [("x", True), (True, 1), (2**64, 1), ("x", 2**64), ["x", 1], ("x",), (1.5, 1),
                ("\ud800", 1)]:
        assert t.add([bad]) == 0, bad
    table = {"x": 1}
    t.drain_into(table)
    assert table == {"x": 2**63} and len(t) == 0
    # Count.PerKey: 1 per pair whatever its value.
    assert t.add([("k", "v"), ("k", None), (3, [])], True) == 3
    assert sorted(t.take_items(), key=repr) == [("k", 2), (3, 1)]

    rng = random.Random(7)
    # Keys of up to 16 bytes are in the table's slots, longer ones apart.
    keys = ["a", "b", "ü", "日本", "\ud800", "k" * 16, "k" * 17, "日" * 6, "l" * 300, 1, -3,
            2**40, True, (1, 2), 2**70]
    values = [1, -2, 0.5, 2**40, -0.0, 1e300, 2**62, 2**70, True]
    for _ in range(300):
        ps = [(rng.choice(keys), rng.choice(values)) for _ in range(rng.randint(0, 40))]
        expected = {}
        for k, v in ps:
            expected[k] = expected.get(k, 0) + v
        t = SumTable()
        n = t.add(ps)
        got = {}
        t.drain_into(got)
        for k, v in ps[n:]:
            got[k] = got.get(k, 0) + v
        assert got == expected, ps
        assert [type(got[k]) for k in expected] == [type(v) for v in expected.values()], ps


def test_combine_per_key_sum_and_count_switch_to_python_midway(B):
    # Plain pairs first (summed in the Rust table), then keys and values it
    # does not take: the sums so far move into Python's dict and go on.
    pairs = [("a", 1), ("b", 2.5), (7, 1), ("a", 2), (("t", 1), 3),
             ("a", 2**70), (7, 1), (True, 4), ("b", 1)]
    with B.pipeline() as p:
        kvs = p | B.beam.Create(pairs)
        sums = kvs | "Sum" >> B.beam.CombinePerKey(sum)
        counts = (
            kvs
            | "Str" >> B.beam.Map(lambda kv: (str(kv[0]), kv[1]))
            | B.beam.combiners.Count.PerKey()
        )
        B.assert_that(sums, B.equal_to(
            [("a", 2**70 + 3), ("b", 3.5), (7, 2), (("t", 1), 3), (True, 4)]), label="Sums")
        B.assert_that(counts, B.equal_to(
            [("a", 3), ("b", 2), ("7", 2), ("('t', 1)", 1), ("True", 1)]), label="Counts")


def test_combine_per_key_sum_of_strings_fails_as_in_python(ox):
    beam = ox.beam
    with pytest.raises(TypeError, match="unsupported operand") as info:
        with beam.Pipeline() as p:
            p | beam.Create([("k", "a"), ("k", "b")]) | beam.CombinePerKey(sum)
    assert "CombinePerKey" in str(info.value)


def test_combine_per_key_min_max(B):
    with B.pipeline() as p:
        pc = p | B.beam.Create(PAIRS)
        B.assert_that(pc | "Min" >> B.beam.CombinePerKey(min), B.equal_to([("a", 1), ("b", 2), ("c", 4)]), label="min")
        B.assert_that(pc | "Max" >> B.beam.CombinePerKey(max), B.equal_to([("a", 5), ("b", 2), ("c", 4)]), label="max")


def test_combine_per_key_lambda(B):
    with B.pipeline() as p:
        out = p | B.beam.Create(PAIRS) | B.beam.CombinePerKey(lambda vs: max(vs) - min(vs) if vs else 0)
        # Callables are applied to partial results too: max - min is not
        # associative, so use a value set where one bundle holds everything.
        B.assert_that(out | B.beam.Keys(), B.equal_to(["a", "b", "c"]))


def test_combine_per_key_custom_combine_fn(B):
    beam = B.beam

    class AverageFn(beam.CombineFn):
        def create_accumulator(self):
            return (0.0, 0)

        def add_input(self, acc, x):
            return (acc[0] + x, acc[1] + 1)

        def merge_accumulators(self, accs):
            sums, counts = zip(*accs)
            return (sum(sums), sum(counts))

        def extract_output(self, acc):
            return acc[0] / acc[1] if acc[1] else float("nan")

    with B.pipeline() as p:
        out = p | beam.Create(PAIRS) | beam.CombinePerKey(AverageFn())
        B.assert_that(out, B.equal_to([("a", 3.0), ("b", 2.0), ("c", 4.0)]))


def test_combine_globally_sum(B):
    with B.pipeline() as p:
        out = p | B.beam.Create(list(range(101))) | B.beam.CombineGlobally(sum)
        B.assert_that(out, B.equal_to([5050]))


def test_combine_globally_empty_gives_default(B):
    with B.pipeline() as p:
        out = p | B.beam.Create([]) | B.beam.CombineGlobally(sum)
        B.assert_that(out, B.equal_to([0]))


def test_combine_values(B):
    with B.pipeline() as p:
        out = p | B.beam.Create([("a", [1, 2, 3]), ("b", [4])]) | B.beam.CombineValues(sum)
        B.assert_that(out, B.equal_to([("a", 6), ("b", 4)]))


def test_count_per_element(B):
    with B.pipeline() as p:
        out = p | B.beam.Create(WORDS) | B.beam.combiners.Count.PerElement()
        B.assert_that(out, B.equal_to([("a", 3), ("b", 2), ("c", 1)]))


def test_count_globally(B):
    with B.pipeline() as p:
        out = p | B.beam.Create(WORDS) | B.beam.combiners.Count.Globally()
        B.assert_that(out, B.equal_to([6]))


def test_count_globally_empty(B):
    with B.pipeline() as p:
        out = p | B.beam.Create([]) | B.beam.combiners.Count.Globally()
        B.assert_that(out, B.equal_to([0]))


def test_count_per_key(B):
    with B.pipeline() as p:
        out = p | B.beam.Create(PAIRS) | B.beam.combiners.Count.PerKey()
        B.assert_that(out, B.equal_to([("a", 3), ("b", 1), ("c", 1)]))


def test_mean_globally_and_per_key(B):
    with B.pipeline() as p:
        pc = p | B.beam.Create(PAIRS)
        B.assert_that(pc | B.beam.Values() | B.beam.combiners.Mean.Globally(), B.equal_to([3.0]), label="g")
        B.assert_that(pc | B.beam.combiners.Mean.PerKey(), B.equal_to([("a", 3.0), ("b", 2.0), ("c", 4.0)]), label="k")


def test_top(B):
    with B.pipeline() as p:
        pc = p | B.beam.Create([5, 1, 9, 3, 7])
        B.assert_that(pc | "L" >> B.beam.combiners.Top.Largest(2), B.equal_to([[9, 7]]), label="largest")
        B.assert_that(pc | "S" >> B.beam.combiners.Top.Smallest(2), B.equal_to([[1, 3]]), label="smallest")
        B.assert_that(pc | "O" >> B.beam.combiners.Top.Of(3, key=lambda x: -x), B.equal_to([[1, 3, 5]]), label="of")


def test_top_per_key(B):
    with B.pipeline() as p:
        out = p | B.beam.Create(PAIRS) | B.beam.combiners.Top.LargestPerKey(2)
        B.assert_that(out, B.equal_to([("a", [5, 3]), ("b", [2]), ("c", [4])]))


def test_to_list(B):
    with B.pipeline() as p:
        out = p | B.beam.Create([3, 1, 2]) | B.beam.combiners.ToList() | B.beam.Map(sorted)
        B.assert_that(out, B.equal_to([[1, 2, 3]]))


def test_flatten(B):
    with B.pipeline() as p:
        a = p | "A" >> B.beam.Create([1, 2])
        b = p | "B" >> B.beam.Create([3])
        c = p | "C" >> B.beam.Create([4, 5]) | B.beam.Map(lambda x: x)
        B.assert_that((a, b, c) | B.beam.Flatten(), B.equal_to([1, 2, 3, 4, 5]))


def test_flatten_mixed_types(B):
    with B.pipeline() as p:
        a = p | "A" >> B.beam.Create([1, 2])
        b = p | "B" >> B.beam.Create(["x"])
        B.assert_that((a, b) | B.beam.Flatten(), B.equal_to([1, 2, "x"]))


def test_flatten_then_group(B):
    with B.pipeline() as p:
        a = p | "A" >> B.beam.Create(["x", "y"]) | "KA" >> B.beam.Map(lambda w: (w, 1))
        b = p | "B" >> B.beam.Create(["x"]) | "KB" >> B.beam.Map(lambda w: (w, 10))
        out = (a, b) | B.beam.Flatten() | B.beam.CombinePerKey(sum)
        B.assert_that(out, B.equal_to([("x", 11), ("y", 1)]))


def test_partition(B):
    with B.pipeline() as p:
        evens, odds, big = p | B.beam.Create(list(range(12))) | B.beam.Partition(
            lambda x, n: 2 if x >= 10 else x % 2, 3)
        B.assert_that(evens, B.equal_to([0, 2, 4, 6, 8]), label="evens")
        B.assert_that(odds, B.equal_to([1, 3, 5, 7, 9]), label="odds")
        B.assert_that(big, B.equal_to([10, 11]), label="big")


def test_partition_fn_class(B):
    beam = B.beam

    class ByLen(beam.PartitionFn):
        def partition_for(self, element, num_partitions):
            return min(len(element), num_partitions - 1)

    with B.pipeline() as p:
        parts = p | beam.Create(["", "a", "bb", "ccc"]) | beam.Partition(ByLen(), 3)
        B.assert_that(parts[0], B.equal_to([""]), label="p0")
        B.assert_that(parts[2], B.equal_to(["bb", "ccc"]), label="p2")


def test_reshuffle(B):
    with B.pipeline() as p:
        out = p | B.beam.Create(list(range(50))) | B.beam.Reshuffle() | B.beam.Map(lambda x: x * 2)
        B.assert_that(out, B.equal_to([x * 2 for x in range(50)]))


def test_reshuffle_keeps_timestamps(B):
    beam = B.beam
    with B.pipeline() as p:
        out = (
            p | beam.Create([1, 2])
            | beam.Map(lambda x: beam.window.TimestampedValue(x, x * 100))
            | beam.Reshuffle()
            | beam.Map(lambda x, t=beam.DoFn.TimestampParam: (x, float(t)))
        )
        B.assert_that(out, B.equal_to([(1, 100.0), (2, 200.0)]))


def test_distinct(B):
    with B.pipeline() as p:
        out = p | B.beam.Create(WORDS + [1, 1]) | B.beam.Distinct()
        B.assert_that(out, B.equal_to(["a", "b", "c", 1]))


def test_keys_values_kvswap(B):
    with B.pipeline() as p:
        pc = p | B.beam.Create([("a", 1), ("b", 2)])
        B.assert_that(pc | B.beam.Keys(), B.equal_to(["a", "b"]), label="keys")
        B.assert_that(pc | B.beam.Values(), B.equal_to([1, 2]), label="values")
        B.assert_that(pc | B.beam.KvSwap(), B.equal_to([(1, "a"), (2, "b")]), label="swap")


def test_co_group_by_key_dict(B):
    with B.pipeline() as p:
        emails = p | "E" >> B.beam.Create([("amy", "a@x"), ("bob", "b@x"), ("amy", "a@y")])
        phones = p | "P" >> B.beam.Create([("amy", "111"), ("carl", "333")])
        out = ({"emails": emails, "phones": phones} | B.beam.CoGroupByKey()
               | B.beam.MapTuple(lambda k, d: (k, sorted(d["emails"]), sorted(d["phones"]))))
        B.assert_that(out, B.equal_to([
            ("amy", ["a@x", "a@y"], ["111"]), ("bob", ["b@x"], []), ("carl", [], ["333"])]))


def test_co_group_by_key_tuple(B):
    with B.pipeline() as p:
        a = p | "A" >> B.beam.Create([(1, "a")])
        b = p | "B" >> B.beam.Create([(1, "b"), (2, "c")])
        out = (a, b) | B.beam.CoGroupByKey() | B.beam.MapTuple(lambda k, vs: (k, [sorted(v) for v in vs]))
        B.assert_that(out, B.equal_to([(1, [["a"], ["b"]]), (2, [[], ["c"]])]))


def test_many_keys_combine(B):
    n = 5000
    with B.pipeline() as p:
        out = (p | B.beam.Create(list(range(n))) | B.beam.Map(lambda x: (x % 100, x))
               | B.beam.CombinePerKey(sum) | B.beam.Values() | B.beam.CombineGlobally(sum))
        B.assert_that(out, B.equal_to([sum(range(n))]))


@pytest.mark.parametrize("lifting", [True, False])
def test_combiner_lifting_on_and_off_agree(ox, lifting):
    from oxbeam import _oxbeam

    beam = ox.beam
    p = beam.Pipeline()
    out = p | beam.Create(PAIRS * 10) | beam.CombinePerKey(sum)
    ox.assert_that(out, ox.equal_to([("a", 90), ("b", 20), ("c", 40)]))
    _oxbeam.run_pipeline(p.to_runner_api_bytes(), {"combiner_lifting": lifting, "fusion": lifting})


def test_fanouts_tuple_combines_and_from_callable(B):
    beam = B.beam
    combiners = beam.transforms.combiners
    with B.pipeline() as p:
        nums = p | beam.Create(list(range(10)))
        B.assert_that(nums | beam.CombineGlobally(sum).with_fanout(3), B.equal_to([45]))
        hot = (p | "Hot" >> beam.Create([("a", i) for i in range(10)] + [("b", 1)])
               | beam.CombinePerKey(sum).with_hot_key_fanout(2))
        B.assert_that(hot, B.equal_to([("a", 45), ("b", 1)]), label="HotKeys")
        both = nums | "Both" >> beam.CombineGlobally(combiners.SingleInputTupleCombineFn(
            combiners.CountCombineFn(), combiners.MeanCombineFn(), max))
        B.assert_that(both, B.equal_to([(10, 4.5, 9)]), label="Tuple")
        called = nums | "Called" >> beam.CombineGlobally(beam.CombineFn.from_callable(max))
        B.assert_that(called, B.equal_to([9]), label="FromCallable")


def test_latest_globally_without_defaults_per_window(B):
    beam = B.beam
    TV = beam.window.TimestampedValue
    with B.pipeline() as p:
        latest = (p | beam.Create([TV(1, 1), TV(2, 5), TV(3, 12)]).with_output_types(int)
                  | beam.WindowInto(beam.window.FixedWindows(10))
                  | beam.combiners.Latest.Globally().without_defaults())
        B.assert_that(latest, B.equal_to([2, 3]))
