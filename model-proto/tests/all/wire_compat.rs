//! Wire compatibility with the descriptors shipped in the pinned apache-beam
//! package: every message, field, enum value, URN option and service method
//! Oxbeam defines must match Beam's exactly.

use std::collections::BTreeSet;

use prost::Message as _;
use prost_reflect::{
    Cardinality, DescriptorPool, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor, Value,
};

use super::beam_python;

/// Every `*_pb2` module of the Beam model, with its transitive imports, as one
/// encoded FileDescriptorSet.
const DUMP_BEAM_DESCRIPTORS: &str = r#"
import importlib, sys
from google.protobuf import descriptor_pb2, descriptor_pool
mods = ["pipeline.v1.beam_runner_api_pb2", "pipeline.v1.endpoints_pb2",
        "pipeline.v1.external_transforms_pb2", "pipeline.v1.metrics_pb2",
        "pipeline.v1.schema_pb2", "pipeline.v1.standard_window_fns_pb2",
        "fn_execution.v1.beam_fn_api_pb2", "fn_execution.v1.beam_provision_api_pb2",
        "interactive.v1.beam_interactive_api_pb2",
        "job_management.v1.beam_artifact_api_pb2", "job_management.v1.beam_expansion_api_pb2",
        "job_management.v1.beam_job_api_pb2"]
files, order = {}, []
def add(fd):
    if fd.name in files:
        return
    for dep in fd.dependencies:
        add(dep)
    files[fd.name] = fd.serialized_pb
    order.append(fd.name)
for m in mods:
    add(importlib.import_module("apache_beam.portability.api.org.apache.beam.model." + m).DESCRIPTOR)
fds = descriptor_pb2.FileDescriptorSet()
for name in order:
    fds.file.add().MergeFromString(files[name])
sys.stdout.buffer.write(fds.SerializeToString())
"#;

fn beam_pool() -> DescriptorPool {
    DescriptorPool::decode(beam_python::run(DUMP_BEAM_DESCRIPTORS).as_slice())
        .expect("decode Beam's descriptor set")
}

fn oxbeam_pool() -> DescriptorPool {
    DescriptorPool::decode(oxbeam_model::descriptor_set()).expect("decode Oxbeam's descriptor set")
}

fn is_beam_model(package: &str) -> bool {
    package.starts_with("org.apache.beam.model.")
}

/// A field as the wire sees it: cardinality, type, number, oneof and map-ness.
fn field_signature(f: &FieldDescriptor) -> String {
    let card = match f.cardinality() {
        Cardinality::Optional if f.supports_presence() && f.containing_oneof().is_none() => {
            "optional"
        }
        Cardinality::Optional => "singular",
        Cardinality::Required => "required",
        Cardinality::Repeated => "repeated",
    };
    let ty = match f.kind() {
        Kind::Message(m) if m.is_map_entry() => {
            let k = field_signature_type(&m.map_entry_key_field());
            let v = field_signature_type(&m.map_entry_value_field());
            format!("map<{k}, {v}>")
        }
        _ => field_signature_type(f),
    };
    let oneof = f
        .containing_oneof()
        .filter(|o| !o.is_synthetic())
        .map(|o| format!(" oneof {}", o.name()))
        .unwrap_or_default();
    let packed = if f.is_packed() { " packed" } else { "" };
    format!("{card} {ty} = {}{oneof}{packed}", f.number())
}

fn field_signature_type(f: &FieldDescriptor) -> String {
    match f.kind() {
        Kind::Message(m) => m.full_name().to_string(),
        Kind::Enum(e) => e.full_name().to_string(),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn compare_enum(
    ours: &EnumDescriptor,
    beam: &EnumDescriptor,
    pools: &Pools,
    diffs: &mut Vec<String>,
) {
    for v in ours.values() {
        let at = format!("enum {}.{}", ours.full_name(), v.name());
        match beam.get_value_by_name(v.name()) {
            None => diffs.push(format!("{at}: not in Beam")),
            Some(b) if b.number() != v.number() => diffs.push(format!(
                "{at}: Beam = {}, Oxbeam = {}",
                b.number(),
                v.number()
            )),
            Some(b) => {
                for ext in ["beam_urn", "beam_constant"] {
                    let ours_opt = pools.string_option(&pools.ours, &v.options(), ext);
                    let beam_opt = pools.string_option(&pools.beam, &b.options(), ext);
                    if ours_opt != beam_opt {
                        diffs.push(format!(
                            "{at} [{ext}]: Beam = {beam_opt:?}, Oxbeam = {ours_opt:?}"
                        ));
                    }
                }
            }
        }
    }
    for b in beam.values() {
        if ours.get_value_by_name(b.name()).is_none() {
            diffs.push(format!(
                "enum {}.{}: missing in Oxbeam",
                beam.full_name(),
                b.name()
            ));
        }
    }
}

fn compare_message(
    ours: &MessageDescriptor,
    beam: &MessageDescriptor,
    pools: &Pools,
    diffs: &mut Vec<String>,
) {
    for f in ours.fields() {
        let at = format!("{}.{}", ours.full_name(), f.name());
        match beam.get_field_by_name(f.name()) {
            None => diffs.push(format!("{at}: not in Beam")),
            Some(b) => {
                let (o, bs) = (field_signature(&f), field_signature(&b));
                if o != bs {
                    diffs.push(format!("{at}:\n    - Beam:   {bs}\n    + Oxbeam: {o}"));
                }
            }
        }
    }
    for b in beam.fields() {
        if ours.get_field_by_name(b.name()).is_none() {
            diffs.push(format!(
                "{}.{}: missing in Oxbeam ({})",
                beam.full_name(),
                b.name(),
                field_signature(&b)
            ));
        }
    }
    for e in ours.child_enums() {
        match pools.beam.get_enum_by_name(e.full_name()) {
            Some(b) => compare_enum(&e, &b, pools, diffs),
            None => diffs.push(format!("enum {}: not in Beam", e.full_name())),
        }
    }
}

struct Pools {
    ours: DescriptorPool,
    beam: DescriptorPool,
}

impl Pools {
    fn string_option(
        &self,
        pool: &DescriptorPool,
        options: &prost_reflect::DynamicMessage,
        name: &str,
    ) -> Option<String> {
        let ext =
            pool.get_extension_by_name(&format!("org.apache.beam.model.pipeline.v1.{name}"))?;
        if !options.has_extension(&ext) {
            return None;
        }
        match options.get_extension(&ext).as_ref() {
            Value::String(s) => Some(s.clone()),
            _ => None,
        }
    }
}

fn wire_diffs(pools: &Pools) -> (Vec<String>, usize) {
    let mut diffs = Vec::new();
    let mut checked = 0;
    for m in pools
        .ours
        .all_messages()
        .filter(|m| is_beam_model(m.package_name()))
    {
        if m.is_map_entry() {
            continue;
        }
        checked += 1;
        match pools.beam.get_message_by_name(m.full_name()) {
            Some(b) => compare_message(&m, &b, pools, &mut diffs),
            None => diffs.push(format!("message {}: not in Beam", m.full_name())),
        }
    }
    for e in pools
        .ours
        .all_enums()
        .filter(|e| is_beam_model(e.package_name()))
    {
        if e.parent_message().is_none() {
            match pools.beam.get_enum_by_name(e.full_name()) {
                Some(b) => compare_enum(&e, &b, pools, &mut diffs),
                None => diffs.push(format!("enum {}: not in Beam", e.full_name())),
            }
        }
    }
    for s in pools.ours.services() {
        let Some(b) = pools.beam.get_service_by_name(s.full_name()) else {
            diffs.push(format!("service {}: not in Beam", s.full_name()));
            continue;
        };
        let sig = |m: &prost_reflect::MethodDescriptor| {
            format!(
                "/{}/{}({}{}) returns ({}{})",
                s.full_name(),
                m.name(),
                if m.is_client_streaming() {
                    "stream "
                } else {
                    ""
                },
                m.input().full_name(),
                if m.is_server_streaming() {
                    "stream "
                } else {
                    ""
                },
                m.output().full_name()
            )
        };
        let ours: BTreeSet<String> = s.methods().map(|m| sig(&m)).collect();
        let beam: BTreeSet<String> = b.methods().map(|m| sig(&m)).collect();
        for m in ours.symmetric_difference(&beam) {
            let side = if ours.contains(m) {
                "only in Oxbeam"
            } else {
                "only in Beam"
            };
            diffs.push(format!("rpc {m}: {side}"));
        }
    }
    (diffs, checked)
}

#[test]
fn every_oxbeam_message_enum_and_service_matches_beam() {
    let pools = Pools {
        ours: oxbeam_pool(),
        beam: beam_pool(),
    };
    let (diffs, checked) = wire_diffs(&pools);
    println!("{checked} messages compared with apache-beam's descriptors");
    assert!(checked > 150, "too few messages compared: {checked}");
    assert!(
        diffs.is_empty(),
        "{} wire differences with apache-beam:\n  {}",
        diffs.len(),
        diffs.join("\n  ")
    );
}

/// The comparison itself must notice a changed field number: compile a copy
/// of Oxbeam's protos with one field renumbered and expect exactly that
/// difference.
#[test]
fn a_changed_field_number_is_reported() {
    let root = std::path::Path::new(
        &std::env::var_os("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("proto");
    // A fresh directory (a fixed name could hold a failed run's edits).
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("proto");
    copy_tree(&root, &copy);
    let file = copy.join("org/apache/beam/model/pipeline/v1/beam_runner_api.proto");
    let text = std::fs::read_to_string(&file).unwrap();
    let (before, after) = ("string unique_name = 5;", "string unique_name = 55;");
    assert_eq!(
        text.matches(before).count(),
        1,
        "PTransform.unique_name declaration"
    );
    std::fs::write(&file, text.replace(before, after)).unwrap();

    let mut compiler = protox::Compiler::new([&copy]).unwrap();
    compiler.include_imports(true);
    compiler
        .open_file("org/apache/beam/model/pipeline/v1/beam_runner_api.proto")
        .unwrap();
    let ours = DescriptorPool::decode(compiler.encode_file_descriptor_set().as_slice()).unwrap();

    let (diffs, _) = wire_diffs(&Pools {
        ours,
        beam: beam_pool(),
    });
    assert_eq!(diffs.len(), 1, "{diffs:#?}");
    assert_eq!(
        diffs[0],
        "org.apache.beam.model.pipeline.v1.PTransform.unique_name:\n    \
         - Beam:   singular string = 5\n    \
         + Oxbeam: singular string = 55"
    );
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).unwrap();
        }
    }
}

/// A wordcount pipeline built by the Beam Python SDK decodes with Oxbeam's
/// types and re-encodes without losing or changing a byte of content.
///
/// Protobuf leaves the order of map entries unspecified, and Python's upb
/// sorts map keys its own way in deterministic mode (Oxbeam encodes them in
/// ascending key order). So the bytes are compared in canonical form: Beam
/// re-serializes Oxbeam's encoding deterministically, which must give exactly
/// the bytes Beam produced in the first place.
#[test]
fn beam_python_pipeline_round_trips_byte_for_byte() {
    let script = r#"
import re, sys
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.api import beam_runner_api_pb2
p = beam.Pipeline(options=PipelineOptions([]))
(p | beam.io.ReadFromText("/nonexistent/in*.txt", validate=False)
   | beam.FlatMap(lambda line: re.findall(r"[A-Za-z']+", line))
   | beam.combiners.Count.PerElement()
   | beam.MapTuple(lambda w, c: "%s: %d" % (w, c))
   | beam.io.WriteToText("/tmp/out"))
sys.stdout.buffer.write(p.to_runner_api().SerializeToString(deterministic=True))
"#;
    // Beam's pipeline has run-specific parts (temp paths), so the canonical
    // comparison reuses the bytes of the first run.
    let canonical = r#"
import sys
from apache_beam.portability.api import beam_runner_api_pb2
original, ours = (open(path, "rb").read() for path in sys.argv[1:3])
again = beam_runner_api_pb2.Pipeline.FromString(ours).SerializeToString(deterministic=True)
sys.stdout.write("identical" if again == original else "DIFFERENT")
"#;
    let bytes = beam_python::run(script);
    let pipeline = oxbeam_model::pipeline::Pipeline::decode(bytes.as_slice()).unwrap();
    let components = pipeline.components.as_ref().unwrap();
    assert!(
        components.transforms.len() > 10,
        "{} transforms",
        components.transforms.len()
    );
    let gbk = oxbeam_model::urns::standard_p_transforms::primitives::GROUP_BY_KEY;
    assert!(
        components
            .transforms
            .values()
            .any(|t| t.spec.as_ref().is_some_and(|s| s.urn == gbk)),
        "wordcount has a GroupByKey"
    );

    let again = pipeline.encode_to_vec();
    assert_eq!(again.len(), bytes.len(), "re-encoded length differs");
    assert_eq!(
        oxbeam_model::pipeline::Pipeline::decode(again.as_slice())
            .unwrap()
            .encode_to_vec(),
        again,
        "Oxbeam's own encoding is not stable"
    );
    let dir = std::env::temp_dir();
    let beam_path = dir.join(format!("oxbeam-roundtrip-beam-{}.pb", std::process::id()));
    let ours_path = dir.join(format!("oxbeam-roundtrip-ours-{}.pb", std::process::id()));
    std::fs::write(&beam_path, &bytes).unwrap();
    std::fs::write(&ours_path, &again).unwrap();
    let verdict = beam_python::run_with_args(
        canonical,
        &[beam_path.to_str().unwrap(), ours_path.to_str().unwrap()],
    );
    std::fs::remove_file(&beam_path).unwrap();
    std::fs::remove_file(&ours_path).unwrap();
    assert_eq!(String::from_utf8_lossy(&verdict), "identical");
}
