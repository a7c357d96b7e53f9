//! Hand-built pipelines for planner tests.

use oxbeam_model::pipeline as pb;
pub(crate) use oxbeam_model::pipeline::Pipeline;
use oxbeam_model::urns::{self, standard_coders as c, standard_p_transforms as t};
use prost::Message;

use crate::PlanOptions;

pub(crate) const NATIVE_ENV: &str = "native";

pub(crate) enum Windowing {
    Global,
    Fixed,
    Sessions,
}

pub(crate) struct Builder {
    pub p: Pipeline,
}

fn spec(urn: &str, payload: Vec<u8>) -> Option<pb::FunctionSpec> {
    Some(pb::FunctionSpec {
        urn: urn.to_string(),
        payload: payload.into(),
    })
}

fn duration(ms: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: ms / 1000,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    })
}

impl Builder {
    pub fn new() -> Self {
        let mut comps = pb::Components::default();
        let mut coder = |id: &str, urn: &str, cs: &[&str]| {
            comps.coders.insert(
                id.to_string(),
                pb::Coder {
                    spec: spec(urn, vec![]),
                    component_coder_ids: cs.iter().map(|s| s.to_string()).collect(),
                },
            );
        };
        coder("bytes", c::BYTES, &[]);
        coder("str", c::STRING_UTF8, &[]);
        coder("varint", c::VARINT, &[]);
        coder("kv_str", c::KV, &["str", "varint"]);
        coder("iter_varint", c::ITERABLE, &["varint"]);
        coder("kv_str_iter", c::KV, &["str", "iter_varint"]);
        coder("gw", c::GLOBAL_WINDOW, &[]);
        coder("iw", c::INTERVAL_WINDOW, &[]);
        let ws = |fn_urn: &str, payload: Vec<u8>, coder: &str, merge: pb::merge_status::Enum| {
            pb::WindowingStrategy {
                window_fn: spec(fn_urn, payload),
                merge_status: merge as i32,
                window_coder_id: coder.to_string(),
                output_time: pb::output_time::Enum::EndOfWindow as i32,
                ..Default::default()
            }
        };
        use pb::merge_status::Enum as M;
        comps.windowing_strategies.insert(
            "global".into(),
            ws(
                urns::global_windows_payload::PROPERTIES,
                vec![],
                "gw",
                M::NonMerging,
            ),
        );
        let fixed = pb::FixedWindowsPayload {
            size: duration(10),
            offset: None,
        }
        .encode_to_vec();
        comps.windowing_strategies.insert(
            "fixed".into(),
            ws(
                urns::fixed_windows_payload::PROPERTIES,
                fixed,
                "iw",
                M::NonMerging,
            ),
        );
        let sessions = pb::SessionWindowsPayload {
            gap_size: duration(5),
        }
        .encode_to_vec();
        comps.windowing_strategies.insert(
            "sessions".into(),
            ws(
                urns::session_windows_payload::PROPERTIES,
                sessions,
                "iw",
                M::NeedsMerge,
            ),
        );
        comps.environments.insert(
            NATIVE_ENV.into(),
            pb::Environment {
                urn: urns::oxbeam_environments::NATIVE.into(),
                ..Default::default()
            },
        );
        comps.environments.insert(
            "other-env".into(),
            pb::Environment {
                urn: "test:env:other".into(),
                ..Default::default()
            },
        );
        Builder {
            p: Pipeline {
                components: Some(comps),
                ..Default::default()
            },
        }
    }

    fn comps(&mut self) -> &mut pb::Components {
        self.p.components.as_mut().unwrap()
    }

    fn pcoll(&mut self, name: &str, coder: &str, ws: &str) -> String {
        let id = format!("{name}.out");
        self.comps().pcollections.insert(
            id.clone(),
            pb::PCollection {
                unique_name: id.clone(),
                coder_id: coder.into(),
                windowing_strategy_id: ws.into(),
                is_bounded: pb::is_bounded::Enum::Bounded as i32,
                ..Default::default()
            },
        );
        id
    }

    fn ws_of(&self, pcoll: &str) -> String {
        self.p.components.as_ref().unwrap().pcollections[pcoll]
            .windowing_strategy_id
            .clone()
    }

    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        name: &str,
        urn: &str,
        payload: Vec<u8>,
        inputs: &[(&str, &str)],
        output: Option<&str>,
        env: &str,
        root: bool,
    ) -> String {
        let id = name.to_string();
        let tr = pb::PTransform {
            unique_name: name.into(),
            spec: spec(urn, payload),
            inputs: inputs
                .iter()
                .map(|(l, p)| (l.to_string(), p.to_string()))
                .collect(),
            outputs: output
                .map(|o| ("out".to_string(), o.to_string()))
                .into_iter()
                .collect(),
            environment_id: env.into(),
            ..Default::default()
        };
        self.comps().transforms.insert(id.clone(), tr);
        if root {
            self.p.root_transform_ids.push(id.clone());
        }
        id
    }

    pub fn impulse(&mut self, name: &str) -> String {
        let out = self.pcoll(name, "bytes", "global");
        self.add(
            name,
            t::primitives::IMPULSE,
            vec![],
            &[],
            Some(&out),
            "",
            true,
        );
        out
    }

    pub fn pardo(&mut self, name: &str, input: &str, coder: &str) -> String {
        self.pardo_in(name, input, coder, NATIVE_ENV, &[])
    }

    pub fn pardo_in(
        &mut self,
        name: &str,
        input: &str,
        coder: &str,
        env: &str,
        side: &[(&str, &str)],
    ) -> String {
        let ws = self.ws_of(input);
        let out = self.pcoll(name, coder, &ws);
        let payload = pb::ParDoPayload {
            do_fn: spec(urns::native_functions::DO_FN, name.as_bytes().to_vec()),
            side_inputs: side
                .iter()
                .map(|(l, _)| {
                    (
                        l.to_string(),
                        pb::SideInput {
                            access_pattern: spec(urns::standard_side_input_types::ITERABLE, vec![]),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
            ..Default::default()
        };
        let mut inputs = vec![("in", input)];
        inputs.extend_from_slice(side);
        self.add(
            name,
            t::primitives::PAR_DO,
            payload.encode_to_vec(),
            &inputs,
            Some(&out),
            env,
            true,
        );
        out
    }

    pub fn window_into(&mut self, name: &str, input: &str, ws: &str) -> String {
        let coder = self.p.components.as_ref().unwrap().pcollections[input]
            .coder_id
            .clone();
        let out = self.pcoll(name, &coder, ws);
        let fn_spec = self.p.components.as_ref().unwrap().windowing_strategies[ws]
            .window_fn
            .clone();
        let payload = pb::WindowIntoPayload { window_fn: fn_spec }.encode_to_vec();
        self.add(
            name,
            t::primitives::ASSIGN_WINDOWS,
            payload,
            &[("in", input)],
            Some(&out),
            NATIVE_ENV,
            true,
        );
        out
    }

    pub fn gbk(&mut self, name: &str, input: &str) -> String {
        let ws = self.ws_of(input);
        let out = self.pcoll(name, "kv_str_iter", &ws);
        self.add(
            name,
            t::primitives::GROUP_BY_KEY,
            vec![],
            &[("in", input)],
            Some(&out),
            "",
            true,
        );
        out
    }

    pub fn flatten(&mut self, name: &str, inputs: &[&str], coder: &str) -> String {
        let ws = self.ws_of(inputs[0]);
        let out = self.pcoll(name, coder, &ws);
        let ins: Vec<(String, &str)> = inputs
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("in{i}"), *p))
            .collect();
        let ins: Vec<(&str, &str)> = ins.iter().map(|(l, p)| (l.as_str(), *p)).collect();
        self.add(
            name,
            t::primitives::FLATTEN,
            vec![],
            &ins,
            Some(&out),
            "",
            true,
        );
        out
    }

    pub fn combine_per_key(&mut self, name: &str, input: &str) -> String {
        let ws = self.ws_of(input);
        let payload = pb::CombinePayload {
            combine_fn: spec(urns::native_functions::COMBINE_FN, b"sum".to_vec()),
            accumulator_coder_id: "varint".into(),
        }
        .encode_to_vec();
        let grouped = self.pcoll(&format!("{name}/Group"), "kv_str_iter", &ws);
        let out = self.pcoll(name, "kv_str", &ws);
        let g = self.add(
            &format!("{name}/Group"),
            t::primitives::GROUP_BY_KEY,
            vec![],
            &[("in", input)],
            Some(&grouped),
            "",
            false,
        );
        let cgv = self.add(
            &format!("{name}/Combine"),
            t::combine_components::COMBINE_GROUPED_VALUES,
            payload.clone(),
            &[("in", &grouped)],
            Some(&out),
            NATIVE_ENV,
            false,
        );
        self.add(
            name,
            t::composites::COMBINE_PER_KEY,
            payload,
            &[("in", input)],
            Some(&out),
            NATIVE_ENV,
            true,
        );
        self.comps().transforms.get_mut(name).unwrap().subtransforms = vec![g, cgv];
        out
    }

    /// A TestStream of strings (coder `str`) with `events`, output `out`
    /// in the global window, marked unbounded.
    pub fn test_stream(
        &mut self,
        name: &str,
        events: Vec<pb::test_stream_payload::Event>,
    ) -> String {
        let out = self.pcoll(name, "str", "global");
        self.comps().pcollections.get_mut(&out).unwrap().is_bounded =
            pb::is_bounded::Enum::Unbounded as i32;
        let payload = pb::TestStreamPayload {
            coder_id: "str".into(),
            events,
            endpoint: None,
        }
        .encode_to_vec();
        self.add(
            name,
            t::primitives::TEST_STREAM,
            payload,
            &[],
            Some(&out),
            "",
            true,
        );
        out
    }

    /// A generator source with this payload and output coder, unbounded.
    pub fn generate(&mut self, name: &str, payload: Vec<u8>, coder: &str) -> String {
        if !self.comps().coders.contains_key("kv_varint") {
            self.comps().coders.insert(
                "kv_varint".into(),
                pb::Coder {
                    spec: spec(c::KV, vec![]),
                    component_coder_ids: vec!["varint".into(), "varint".into()],
                },
            );
        }
        self.unbounded_source(name, urns::oxbeam_transforms::GENERATE, payload, coder)
    }

    /// A file-watching source with `payload` (WatchFilesPayload) emitting
    /// PCollections of `coder`.
    pub fn watch_files(&mut self, name: &str, payload: Vec<u8>, coder: &str) -> String {
        self.unbounded_source(name, urns::oxbeam_transforms::WATCH_FILES, payload, coder)
    }

    /// A runner-executed source `urn` with an unbounded output of `coder`.
    fn unbounded_source(&mut self, name: &str, urn: &str, payload: Vec<u8>, coder: &str) -> String {
        let out = self.pcoll(name, coder, "global");
        self.comps().pcollections.get_mut(&out).unwrap().is_bounded =
            pb::is_bounded::Enum::Unbounded as i32;
        self.add(name, urn, payload, &[], Some(&out), "", true);
        out
    }

    pub fn build(self) -> Pipeline {
        self.p
    }
}

/// TestStream events for planner tests.
pub(crate) mod events {
    use oxbeam_model::pipeline::test_stream_payload::{Event, TimestampedElement, event};

    /// Strings (outer encoding: the UTF-8 bytes) at their timestamps.
    pub fn elements(tag: &str, items: &[(&str, i64)]) -> Event {
        Event {
            event: Some(event::Event::ElementEvent(event::AddElements {
                elements: items
                    .iter()
                    .map(|(s, ts)| TimestampedElement {
                        encoded_element: s.as_bytes().to_vec().into(),
                        timestamp: *ts,
                    })
                    .collect(),
                tag: tag.into(),
            })),
        }
    }

    pub fn watermark(tag: &str, to: i64) -> Event {
        Event {
            event: Some(event::Event::WatermarkEvent(event::AdvanceWatermark {
                new_watermark: to,
                tag: tag.into(),
            })),
        }
    }

    pub fn processing_time(by: i64) -> Event {
        Event {
            event: Some(event::Event::ProcessingTimeEvent(
                event::AdvanceProcessingTime {
                    advance_duration: by,
                },
            )),
        }
    }
}

/// Impulse → Create → Split → [WindowInto] → PairWithOne → CombinePerKey(sum) → Format.
pub(crate) fn word_count(w: Windowing) -> Pipeline {
    let mut b = Builder::new();
    let imp = b.impulse("Impulse");
    let lines = b.pardo("Create", &imp, "str");
    let mut words = b.pardo("Split", &lines, "str");
    match w {
        Windowing::Global => {}
        Windowing::Fixed => words = b.window_into("Window", &words, "fixed"),
        Windowing::Sessions => words = b.window_into("Window", &words, "sessions"),
    }
    let pairs = b.pardo("PairWithOne", &words, "kv_str");
    let counts = b.combine_per_key("Count", &pairs);
    b.pardo("Format", &counts, "str");
    b.build()
}

/// The plan's text, or the error's.
pub(crate) fn plan_text(p: &Pipeline, opts: PlanOptions) -> String {
    match crate::plan(p, &opts) {
        Ok(plan) => plan.to_string(),
        Err(e) => format!("error: {e}"),
    }
}
