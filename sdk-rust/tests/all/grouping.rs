//! GroupByKey, CoGroupByKey, Distinct, Count per element.

use crate::common::{pipeline, strings, unfused_pipeline};

fn sorted_groups(mut v: Vec<(String, Vec<i64>)>) -> Vec<(String, Vec<i64>)> {
    for (_, g) in &mut v {
        g.sort();
    }
    v.sort();
    v
}

#[test]
fn group_by_key_groups_values() {
    for p in [pipeline(), unfused_pipeline()] {
        let out = p
            .create(
                "Kvs",
                vec![
                    ("a".to_string(), 1i64),
                    ("b".to_string(), 2),
                    ("a".to_string(), 3),
                ],
            )
            .group_by_key("Group")
            .collect_for_testing("Out");
        p.run().unwrap();
        assert_eq!(
            sorted_groups(out.values()),
            vec![("a".to_string(), vec![1, 3]), ("b".to_string(), vec![2])]
        );
    }
}

#[test]
fn co_group_by_key_joins() {
    let p = pipeline();
    let emails = p.create(
        "Emails",
        vec![
            ("ann".to_string(), "ann@x".to_string()),
            ("bo".to_string(), "bo@y".to_string()),
        ],
    );
    let phones = p.create(
        "Phones",
        vec![
            ("ann".to_string(), 123i64),
            ("ann".to_string(), 456),
            ("cy".to_string(), 789),
        ],
    );
    let out = emails
        .co_group_by_key("Join", &phones)
        .collect_for_testing("Out");
    p.run().unwrap();
    let mut got = out.values();
    for (_, (_, ph)) in &mut got {
        ph.sort();
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            ("ann".to_string(), (strings(&["ann@x"]), vec![123, 456])),
            ("bo".to_string(), (strings(&["bo@y"]), vec![])),
            ("cy".to_string(), (vec![], vec![789])),
        ]
    );
}

#[test]
fn distinct_and_count_per_element() {
    let p = pipeline();
    let xs = p.create("Xs", strings(&["x", "y", "x", "z", "x"]));
    let d = xs.distinct("Distinct").collect_for_testing("D");
    let c = xs.count_per_element("Count").collect_for_testing("C");
    p.run().unwrap();
    assert_eq!(d.sorted(), strings(&["x", "y", "z"]));
    assert_eq!(
        c.sorted(),
        vec![
            ("x".to_string(), 3),
            ("y".to_string(), 1),
            ("z".to_string(), 1)
        ]
    );
}
