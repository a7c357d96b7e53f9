//! Beam Python's own environment kinds, run as process environments.
//!
//! Besides the standard environments, Beam Python names two of its own
//! (`apache_beam.portability.python_urns`), which its portable-runner test
//! suite uses by default: `beam:env:harness_subprocess_python:v1`, whose
//! payload is the command line of a harness, and
//! `beam:env:embedded_python:v1`, a harness inside the runner. Oxbeam runs
//! both as `beam:env:process:v1` environments: the payload's command, and
//! for embedded Python `PYTHON -m apache_beam.runners.worker.sdk_worker_main`
//! with the job server's Python interpreter (`--python`).

use oxbeam_model::pipeline as pb;
use oxbeam_model::urns::standard_environments::environments::PROCESS;
use prost::Message;

use crate::{Error, Result};

/// Beam Python's `SUBPROCESS_SDK`: payload is a harness command line.
pub(crate) const SUBPROCESS_PYTHON: &str = "beam:env:harness_subprocess_python:v1";
/// Beam Python's `EMBEDDED_PYTHON`: a harness in the runner's process.
pub(crate) const EMBEDDED_PYTHON: &str = "beam:env:embedded_python:v1";

/// The command of Beam's Python SDK harness on interpreter `python`.
pub(crate) fn beam_python_harness(python: &str) -> String {
    format!("{python} -m apache_beam.runners.worker.sdk_worker_main")
}

/// Rewrites `pipeline`'s Beam Python subprocess and embedded environments
/// into process environments; `python` runs embedded ones.
///
/// # Errors
/// [`Error::InvalidPipeline`] if a subprocess environment's payload is not
/// a UTF-8 command line, or is empty.
pub(crate) fn as_process(pipeline: &mut pb::Pipeline, python: &str) -> Result<()> {
    let Some(components) = pipeline.components.as_mut() else {
        return Ok(());
    };
    for (id, env) in &mut components.environments {
        let command = match env.urn.as_str() {
            SUBPROCESS_PYTHON => std::str::from_utf8(&env.payload)
                .map_err(|_| {
                    Error::InvalidPipeline(format!(
                        "environment {id}: the {SUBPROCESS_PYTHON} payload is not a UTF-8 command line"
                    ))
                })?
                .trim()
                .to_string(),
            EMBEDDED_PYTHON => beam_python_harness(python),
            _ => continue,
        };
        if command.is_empty() {
            return Err(Error::InvalidPipeline(format!(
                "environment {id}: the {SUBPROCESS_PYTHON} payload holds no command"
            )));
        }
        env.urn = PROCESS.to_string();
        env.payload = pb::ProcessPayload {
            command,
            ..Default::default()
        }
        .encode_to_vec()
        .into();
    }
    Ok(())
}

/// The interpreter of embedded Python environments unless told otherwise:
/// `$OXBEAM_PYTHON`, else `python3` on the PATH.
pub(crate) fn default_python() -> String {
    std::env::var("OXBEAM_PYTHON")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| "python3".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(urn: &str, payload: &[u8]) -> pb::Pipeline {
        let mut components = pb::Components::default();
        components.environments.insert(
            "env".into(),
            pb::Environment {
                urn: urn.into(),
                payload: payload.to_vec().into(),
                ..Default::default()
            },
        );
        pb::Pipeline {
            components: Some(components),
            ..Default::default()
        }
    }

    fn command(p: &pb::Pipeline) -> (String, String) {
        let env = &p.components.as_ref().unwrap().environments["env"];
        let payload = pb::ProcessPayload::decode(env.payload.as_ref()).unwrap();
        (env.urn.clone(), payload.command)
    }

    #[test]
    fn a_subprocess_environment_runs_its_command() {
        let mut p = pipeline(SUBPROCESS_PYTHON, b" py -m worker ");
        as_process(&mut p, "unused").unwrap();
        assert_eq!(
            command(&p),
            (PROCESS.to_string(), "py -m worker".to_string())
        );
    }

    #[test]
    fn an_embedded_environment_runs_beams_harness_with_the_servers_python() {
        let mut p = pipeline(EMBEDDED_PYTHON, b"");
        as_process(&mut p, "/opt/py/bin/python").unwrap();
        assert_eq!(
            command(&p),
            (
                PROCESS.to_string(),
                "/opt/py/bin/python -m apache_beam.runners.worker.sdk_worker_main".to_string()
            )
        );
    }

    #[test]
    fn other_environments_are_left_alone_and_bad_commands_refused() {
        let mut p = pipeline("beam:env:docker:v1", b"image");
        let before = p.clone();
        as_process(&mut p, "python3").unwrap();
        assert_eq!(p, before);
        for bad in [&b"  "[..], &[0xff, 0xfe][..]] {
            let err = as_process(&mut pipeline(SUBPROCESS_PYTHON, bad), "python3").unwrap_err();
            assert!(
                err.to_string().starts_with("environment env: the "),
                "{err}"
            );
        }
    }
}
