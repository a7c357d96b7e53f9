//! Built-in and user combiners, globally and per key, lifted or not.

use oxbeam::combiners::{Count, Max, Mean, Min, Sample, Sum, ToList, Top};
use oxbeam::{CombineFn, Pipeline, PipelineOptions};

use crate::common::{pipeline, strings};

fn kvs(p: &Pipeline) -> oxbeam::PCollection<(String, i64)> {
    p.create(
        "Kvs",
        vec![
            ("a".to_string(), 1i64),
            ("b".to_string(), 10),
            ("a".to_string(), 5),
            ("a".to_string(), 3),
            ("b".to_string(), -2),
        ],
    )
}

#[test]
fn per_key_builtins() {
    for lifting in [true, false] {
        let p = Pipeline::new(PipelineOptions {
            parallelism: Some(2),
            no_progress: true,
            no_combiner_lifting: !lifting,
            ..Default::default()
        });
        let kv = kvs(&p);
        let sum = kv
            .apply("Sum", Sum::per_key())
            .collect_for_testing("SumOut");
        let min = kv
            .apply("Min", Min::per_key())
            .collect_for_testing("MinOut");
        let max = kv
            .apply("Max", Max::per_key())
            .collect_for_testing("MaxOut");
        let mean = kv
            .apply("Mean", Mean::per_key())
            .collect_for_testing("MeanOut");
        let count = kv
            .apply("Count", Count::per_key())
            .collect_for_testing("CountOut");
        let top = kv
            .apply("Top", Top::largest_per_key(2))
            .collect_for_testing("TopOut");
        let list = kv
            .apply("List", ToList::per_key())
            .collect_for_testing("ListOut");
        p.run().unwrap();
        assert_eq!(
            sum.sorted(),
            vec![("a".to_string(), 9), ("b".to_string(), 8)]
        );
        assert_eq!(
            min.sorted(),
            vec![("a".to_string(), 1), ("b".to_string(), -2)]
        );
        assert_eq!(
            max.sorted(),
            vec![("a".to_string(), 5), ("b".to_string(), 10)]
        );
        let mut m = mean.values();
        m.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(m, vec![("a".to_string(), 3.0), ("b".to_string(), 4.0)]);
        assert_eq!(
            count.sorted(),
            vec![("a".to_string(), 3), ("b".to_string(), 2)]
        );
        assert_eq!(
            top.sorted(),
            vec![
                ("a".to_string(), vec![5, 3]),
                ("b".to_string(), vec![10, -2])
            ]
        );
        let mut l = list.values();
        l.iter_mut().for_each(|(_, v)| v.sort());
        l.sort();
        assert_eq!(
            l,
            vec![
                ("a".to_string(), vec![1, 3, 5]),
                ("b".to_string(), vec![-2, 10])
            ]
        );
    }
}

#[test]
fn global_builtins_and_empty_inputs() {
    let p = pipeline();
    let xs = p.create("Xs", vec![4i64, 8, 1, 7]);
    let empty = p.create("Empty", Vec::<i64>::new());
    let sum = xs
        .apply("Sum", Sum::globally())
        .collect_for_testing("SumOut");
    let count = xs
        .apply("Count", Count::globally())
        .collect_for_testing("CountOut");
    let smallest = xs
        .apply("Smallest", Top::smallest(3))
        .collect_for_testing("SmallOut");
    let mean = xs
        .apply("Mean", Mean::globally())
        .collect_for_testing("MeanOut");
    let empty_sum = empty
        .apply("EmptySum", Sum::globally())
        .collect_for_testing("EmptySumOut");
    let empty_count = empty
        .apply("EmptyCount", Count::globally())
        .collect_for_testing("EmptyCountOut");
    let empty_max = empty
        .apply("EmptyMax", Max::globally())
        .collect_for_testing("EmptyMaxOut");
    let empty_list = empty
        .apply("EmptyList", ToList::globally())
        .collect_for_testing("EmptyListOut");
    p.run().unwrap();
    assert_eq!(sum.values(), vec![20]);
    assert_eq!(count.values(), vec![4]);
    assert_eq!(smallest.values(), vec![vec![1, 4, 7]]);
    assert_eq!(mean.values(), vec![5.0]);
    assert_eq!(empty_sum.values(), vec![0]);
    assert_eq!(empty_count.values(), vec![0]);
    assert_eq!(empty_max.values(), Vec::<i64>::new());
    assert_eq!(empty_list.values(), vec![Vec::<i64>::new()]);
}

#[test]
fn samples_have_the_right_size_and_come_from_the_input() {
    let p = pipeline();
    let xs = p.create("Xs", 0..1000i64);
    let s = xs
        .apply("Sample", Sample::fixed_size_globally(10))
        .collect_for_testing("S");
    let small = p
        .create("Few", vec![1i64, 2])
        .apply("SampleFew", Sample::fixed_size_globally(5))
        .collect_for_testing("F");
    let per_key = xs
        .with_keys("Mod", |x: &i64| x % 3)
        .apply("SamplePerKey", Sample::fixed_size_per_key(4))
        .collect_for_testing("K");
    p.run().unwrap();
    let s = s.values();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].len(), 10);
    let mut uniq = s[0].clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 10);
    assert!(uniq.iter().all(|x| (0..1000).contains(x)));
    let mut few = small.values()[0].clone();
    few.sort();
    assert_eq!(few, vec![1, 2]);
    let pk = per_key.sorted();
    assert_eq!(pk.len(), 3);
    for (k, v) in pk {
        assert_eq!(v.len(), 4);
        assert!(v.iter().all(|x| x % 3 == k));
    }
}

#[derive(Clone)]
struct Concat;

impl CombineFn for Concat {
    type In = String;
    type Acc = Vec<String>;
    type Out = String;
    fn create_accumulator(&self) -> Vec<String> {
        Vec::new()
    }
    fn add_input(&self, acc: &mut Vec<String>, s: &String) {
        acc.push(s.clone());
    }
    fn merge_accumulators(&self, acc: &mut Vec<String>, other: Vec<String>) {
        acc.extend(other);
    }
    fn extract_output(&self, mut acc: Vec<String>) -> String {
        acc.sort();
        acc.join("+")
    }
}

#[test]
fn user_combine_fn_globally_and_per_key() {
    let p = pipeline();
    let words = p.create("Words", strings(&["b", "a", "c"]));
    let all = words
        .combine_globally("Concat", Concat)
        .collect_for_testing("All");
    let per_key = words
        .with_keys("Vowel", |w: &String| w == "a")
        .combine_per_key("ConcatPerKey", Concat)
        .collect_for_testing("PerKey");
    p.run().unwrap();
    assert_eq!(all.values(), strings(&["a+b+c"]));
    assert_eq!(
        per_key.sorted(),
        vec![(false, "b+c".to_string()), (true, "a".to_string())]
    );
}
