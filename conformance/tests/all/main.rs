//! Runs every conformance case on every runner configuration and prints the
//! Implemented/Unimplemented ledger.

use oxbeam_conformance::{Ledger, Outcome, cases_dir, load_cases, run_case, runner_configs};

#[test]
fn every_case_passes_on_every_runner_that_implements_it() {
    let cases = load_cases(cases_dir()).expect("load cases");
    assert!(cases.len() >= 25, "only {} cases", cases.len());
    passes_everywhere(&cases, runner_configs(), 3);
}

/// Runs every case on every runner of `runners`, prints the ledger, and
/// checks that nothing failed and that at least `min_runners` runners' worth
/// of cases passed.
fn passes_everywhere(
    cases: &[oxbeam_conformance::Case],
    runners: Vec<oxbeam_conformance::RunnerConfig>,
    min_runners: usize,
) {
    let mut ledger = Ledger::default();
    for runner in runners {
        for case in cases {
            ledger.record(&case.name, runner.name, run_case(case, &runner));
        }
    }
    println!("{ledger}");
    let failures = ledger.failures();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let (passed, _, _) = ledger.totals();
    assert!(
        passed >= cases.len() * min_runners,
        "too few cases ran: {passed}"
    );
}

/// The harness itself must notice a wrong expectation.
#[test]
fn a_wrong_expectation_fails() {
    let mut case = load_cases(cases_dir())
        .unwrap()
        .into_iter()
        .find(|c| c.name == "sum_per_key")
        .expect("sum_per_key case");
    case.expected = oxbeam_conformance::Expected::Output(vec!["a=999".into()]);
    let outcome = run_case(&case, &runner_configs()[0]);
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
}

/// The Wasm mode really runs user functions in Wasm: the panicking DoFn's
/// panic surfaces as a Wasm trap carrying the guest's message.
#[test]
fn wasm_mode_runs_user_functions_as_wasm_stages() {
    let mut case = load_cases(cases_dir())
        .unwrap()
        .into_iter()
        .find(|c| c.name == "panicking_dofn_fails_the_job")
        .expect("panicking_dofn_fails_the_job case");
    case.expected = oxbeam_conformance::Expected::Failure(vec![
        "S0MayPanic".into(),
        "wasm trap in panic_on_value".into(),
        "conformance: refusing value 2".into(),
    ]);
    let runners = runner_configs();
    let wasm = runners.iter().find(|r| r.wasm).expect("a Wasm runner");
    assert_eq!(run_case(&case, wasm), Outcome::Passed);
    let native = runners.iter().find(|r| !r.wasm).expect("a native runner");
    assert!(matches!(run_case(&case, native), Outcome::Failed(_)));
}

/// Every case gives the same outcome with its stages behind the Fn API
/// protocol in this process (the in-memory transport) as run directly.
#[test]
fn every_case_passes_through_the_in_memory_fn_api() {
    let cases = load_cases(cases_dir()).expect("load cases");
    passes_everywhere(&cases, oxbeam_conformance::in_memory_configs(), 2);
}

/// Every case gives the same outcome with its native stages in SDK harness
/// processes (the conformance worker binary, over the gRPC Fn API) as in
/// process.
#[test]
fn every_case_passes_with_native_stages_in_harness_processes() {
    let cases = load_cases(cases_dir()).expect("load cases");
    let worker = std::path::Path::new(env!("CARGO_BIN_EXE_oxbeam-conformance-worker"));
    passes_everywhere(
        &cases,
        oxbeam_conformance::out_of_process_configs(worker),
        2,
    );

    // The stages really run in the worker processes: with a harness that
    // exits at once, the case fails saying so.
    let sum = cases.iter().find(|c| c.name == "sum_per_key").unwrap();
    let broken = oxbeam_conformance::out_of_process_configs(std::path::Path::new("/bin/false"));
    let outcome = run_case(sum, &broken[0]);
    assert!(
        matches!(&outcome, Outcome::Failed(m) if m.contains("exited before connecting")),
        "{outcome:?}"
    );
}
