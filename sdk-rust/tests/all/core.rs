//! Element-wise and structural transforms.

use oxbeam::Element;

use crate::common::{pipeline, strings, unfused_pipeline};

#[test]
fn create_map_flat_map_filter() {
    for p in [pipeline(), unfused_pipeline()] {
        let words = p
            .create("Lines", strings(&["a bb", "ccc", ""]))
            .flat_map("Split", |l: &String| {
                l.split_whitespace().map(str::to_string).collect::<Vec<_>>()
            })
            .filter("Long", |w: &String| w.len() > 1)
            .map("Upper", |w: &String| w.to_uppercase())
            .collect_for_testing("Out");
        p.run().unwrap();
        assert_eq!(words.sorted(), strings(&["BB", "CCC"]));
    }
}

#[test]
fn large_create_is_complete() {
    let p = pipeline();
    let n = 35_000i64;
    let out = p
        .create("Xs", 0..n)
        .map("Inc", |x: &i64| x + 1)
        .collect_for_testing("Out");
    p.run().unwrap();
    assert_eq!(out.sorted(), (1..=n).collect::<Vec<_>>());
}

#[test]
fn generate_sequence_and_chained_maps() {
    let p = pipeline();
    let mut xs = p.generate_sequence("Seq", 0, 250_000);
    for i in 0..10 {
        xs = xs.map(&format!("Map{i}"), |x: &i64| x + 1);
    }
    let sum = xs
        .apply("Sum", oxbeam::combiners::Sum::globally())
        .collect_for_testing("Out");
    p.run().unwrap();
    let expected: i64 = (0..250_000i64).map(|x| x + 10).sum();
    assert_eq!(sum.values(), vec![expected]);
}

#[test]
fn keys_values_swap_and_with_keys() {
    let p = pipeline();
    let kvs = p
        .create("Words", strings(&["apple", "bob", "cat"]))
        .with_keys("ByLen", |w: &String| w.len() as i64);
    let keys = kvs.keys("Keys").collect_for_testing("K");
    let values = kvs.values("Values").collect_for_testing("V");
    let swapped = kvs.kv_swap("Swap").collect_for_testing("S");
    let mapped = kvs
        .map_values("FirstChar", |w: &String| {
            w.chars().next().unwrap_or(' ').to_string()
        })
        .collect_for_testing("M");
    p.run().unwrap();
    assert_eq!(keys.sorted(), vec![3, 3, 5]);
    assert_eq!(values.sorted(), strings(&["apple", "bob", "cat"]));
    assert_eq!(
        swapped.sorted(),
        vec![
            ("apple".to_string(), 5),
            ("bob".to_string(), 3),
            ("cat".to_string(), 3)
        ]
    );
    assert_eq!(
        mapped.sorted(),
        vec![
            (3, "b".to_string()),
            (3, "c".to_string()),
            (5, "a".to_string())
        ]
    );
}

#[test]
fn flatten_partition_reshuffle() {
    let p = pipeline();
    let a = p.create("A", vec![1i64, 2, 3]);
    let b = p.create("B", vec![10i64, 20]);
    let all = a.flatten_with("Flatten", &[b]);
    let parts = all.partition("EvenOdd", 2, |x: &i64, _| (*x % 2) as usize);
    let even = parts[0].collect_for_testing("Even");
    let odd = parts[1].reshuffle("Reshuffle").collect_for_testing("Odd");
    p.run().unwrap();
    assert_eq!(even.sorted(), vec![2, 10, 20]);
    assert_eq!(odd.sorted(), vec![1, 3]);
}

#[test]
fn fan_out_to_several_consumers() {
    let p = pipeline();
    let xs = p.create("Xs", vec![1i64, 2]);
    let a = xs.map("Plus", |x: &i64| x + 100).collect_for_testing("A");
    let b = xs.map("Times", |x: &i64| x * 100).collect_for_testing("B");
    let c = xs.collect_for_testing("C");
    p.run().unwrap();
    assert_eq!(a.sorted(), vec![101, 102]);
    assert_eq!(b.sorted(), vec![100, 200]);
    assert_eq!(c.sorted(), vec![1, 2]);
}

#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
struct Person {
    name: String,
    age: u32,
}
oxbeam::serde_element!(Person);

#[test]
fn serde_structs_as_elements_and_keys() {
    let p = pipeline();
    let people = p.create(
        "People",
        vec![
            Person {
                name: "ann".into(),
                age: 30,
            },
            Person {
                name: "bo".into(),
                age: 30,
            },
            Person {
                name: "ann".into(),
                age: 30,
            },
        ],
    );
    let counts = people.count_per_element("Count").collect_for_testing("Out");
    let older = people
        .map("Older", |x: &Person| Person {
            age: x.age + 1,
            ..x.clone()
        })
        .distinct("Distinct")
        .collect_for_testing("D");
    p.run().unwrap();
    assert_eq!(
        counts.sorted(),
        vec![
            (
                Person {
                    name: "ann".into(),
                    age: 30
                },
                2
            ),
            (
                Person {
                    name: "bo".into(),
                    age: 30
                },
                1
            )
        ]
    );
    assert_eq!(
        older.sorted(),
        vec![
            Person {
                name: "ann".into(),
                age: 31
            },
            Person {
                name: "bo".into(),
                age: 31
            }
        ]
    );
    let spec = <Person as Element>::Coder::default();
    let _ = spec;
}

#[test]
fn standard_types_round_trip_through_shuffles() {
    let p = pipeline();
    let out = p
        .create(
            "Xs",
            vec![(Some(1.5f64), vec![true, false]), (None, vec![])],
        )
        .reshuffle("Reshuffle")
        .map("Show", |x: &(Option<f64>, Vec<bool>)| format!("{x:?}"))
        .collect_for_testing("Out");
    p.run().unwrap();
    assert_eq!(
        out.sorted(),
        strings(&["(None, [])", "(Some(1.5), [true, false])"])
    );
}

#[test]
fn map_and_flat_map_take_elements_by_value_or_by_reference() {
    for p in [pipeline(), unfused_pipeline()] {
        let lines = p.create("Lines", strings(&["a bb", "ccc", ""]));
        // By value: modify the element and return it, no clone.
        let shouted = lines
            .map("Shout", |mut l: String| {
                l.make_ascii_uppercase();
                l
            })
            .collect_for_testing("Shouted");
        // By value into a flat map: the parts move out of the element.
        let words = lines
            .flat_map("Split", |l: String| {
                l.split_whitespace().map(str::to_string).collect::<Vec<_>>()
            })
            .map("Pair", |w: String| (w, 1i64))
            .map("Len", |(w, n): &(String, i64)| w.len() as i64 + n)
            .collect_for_testing("Words");
        // A function item works as well.
        fn twice(v: Vec<u8>) -> Vec<u8> {
            [v.clone(), v].concat()
        }
        let bytes = p
            .create("Bytes", vec![b"ab".to_vec()])
            .map("Twice", twice)
            .collect_for_testing("Bytes");
        p.run().unwrap();
        assert_eq!(shouted.sorted(), strings(&["", "A BB", "CCC"]));
        assert_eq!(words.sorted(), vec![2, 3, 4]);
        assert_eq!(bytes.values(), vec![b"abab".to_vec()]);
    }
}
