use crate::common::pipeline;

#[test]
fn map_runs_end_to_end() {
    let p = pipeline();
    let out = p
        .create("Xs", vec![1i64, 2, 3])
        .map("Double", |x: &i64| x * 2)
        .collect_for_testing("Out");
    p.run().unwrap();
    assert_eq!(out.sorted(), vec![2, 4, 6]);
}
