//! Compiles Oxbeam's Beam-compatible protos hermetically (protox, no system
//! protoc), generates prost messages and tonic clients/servers, and derives
//! the URN constant module from the `beam_urn` / `beam_constant` enum options.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use prost_reflect::{DescriptorPool, EnumDescriptor, Value};

const PROTO_ROOT: &str = "proto";
const BEAM_URN: &str = "org.apache.beam.model.pipeline.v1.beam_urn";
const BEAM_CONSTANT: &str = "org.apache.beam.model.pipeline.v1.beam_constant";
const MONITORING_INFO_SPEC: &str = "org.apache.beam.model.pipeline.v1.monitoring_info_spec";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut files = Vec::new();
    collect_protos(Path::new(PROTO_ROOT), &mut files)?;
    files.sort();
    println!("cargo:rerun-if-changed={PROTO_ROOT}");

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(&files)?;
    // Encoded through prost-reflect so custom options (beam_urn, ...) survive.
    let fds_bytes = compiler.encode_file_descriptor_set();
    let fds = compiler.file_descriptor_set();
    std::fs::write(out_dir.join("oxbeam_descriptor_set.bin"), &fds_bytes)?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Maps encode in key order so re-encoding a decoded message is
        // byte-identical to a deterministic serialization by another SDK.
        .btree_map(".")
        .bytes(".")
        .compile_fds(fds)?;

    let pool = DescriptorPool::decode(fds_bytes.as_slice())?;
    std::fs::write(out_dir.join("urns.rs"), render_urns(&pool))?;
    Ok(())
}

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path.strip_prefix(PROTO_ROOT).unwrap().to_path_buf());
        }
    }
    Ok(())
}

/// One generated module per enum that carries `beam_urn` or `beam_constant`
/// options, nested like the proto (`standard_p_transforms::primitives::PAR_DO`).
fn render_urns(pool: &DescriptorPool) -> String {
    #[derive(Default)]
    struct Module {
        consts: Vec<(String, String, String)>,
        children: BTreeMap<String, Module>,
    }
    let urn_ext = pool
        .get_extension_by_name(BEAM_URN)
        .expect("beam_urn extension");
    let const_ext = pool
        .get_extension_by_name(BEAM_CONSTANT)
        .expect("beam_constant extension");
    let spec_ext = pool
        .get_extension_by_name(MONITORING_INFO_SPEC)
        .expect("monitoring_info_spec extension");
    let mut root = Module::default();
    let mut add = |e: &EnumDescriptor| {
        let mut consts = Vec::new();
        for v in e.values() {
            let opts = v.options();
            for (ext, kind) in [(&urn_ext, "URN"), (&const_ext, "constant")] {
                if opts.has_extension(ext) {
                    if let Value::String(s) = opts.get_extension(ext).as_ref() {
                        consts.push((v.name().to_string(), s.clone(), kind.to_string()));
                    }
                }
            }
            if opts.has_extension(&spec_ext) {
                if let Value::Message(spec) = opts.get_extension(&spec_ext).as_ref() {
                    if let Some(urn) = spec.get_field_by_name("urn") {
                        if let Value::String(s) = urn.as_ref() {
                            consts.push((
                                v.name().to_string(),
                                s.clone(),
                                "metric URN".to_string(),
                            ));
                        }
                    }
                }
            }
        }
        if consts.is_empty() {
            return;
        }
        let package = e.parent_file().package_name().to_string();
        let relative = e.full_name().strip_prefix(&format!("{package}.")).unwrap();
        let mut module = &mut root;
        // Beam wraps many URN enums as `message StandardX { enum Enum {..} }`:
        // the `Enum` level adds nothing, so its values live in `standard_x`.
        for part in relative.split('.').filter(|p| *p != "Enum") {
            module = module.children.entry(snake(part)).or_default();
        }
        module.consts.extend(consts);
    };
    for message in pool.all_messages() {
        for e in message.child_enums() {
            add(&e);
        }
    }
    for e in pool.all_enums() {
        if e.parent_message().is_none() {
            add(&e);
        }
    }

    fn emit_table(out: &mut String, module: &Module, path: &str) {
        for (name, value, _) in &module.consts {
            let _ = writeln!(out, "    ({:?}, {value:?}),", format!("{path}{name}"));
        }
        for (name, child) in &module.children {
            emit_table(out, child, &format!("{path}{name}::"));
        }
    }

    fn emit(out: &mut String, module: &Module, depth: usize) {
        let pad = "    ".repeat(depth);
        for (name, value, kind) in &module.consts {
            let _ = writeln!(out, "{pad}/// Beam {kind} `{value}`.");
            let _ = writeln!(out, "{pad}pub const {name}: &str = {value:?};");
        }
        for (name, child) in &module.children {
            let _ = writeln!(out, "{pad}/// Values of the proto enum `{name}`.");
            let _ = writeln!(out, "{pad}pub mod {name} {{");
            emit(out, child, depth + 1);
            let _ = writeln!(out, "{pad}}}");
        }
    }
    let mut out = String::from(
        "// @generated by model-proto/build.rs from the beam_urn/beam_constant options.\n",
    );
    emit(&mut out, &root, 0);
    out.push_str("/// Every constant above as (path, value), in module order.\npub const ALL: &[(&str, &str)] = &[\n");
    emit_table(&mut out, &root, "");
    out.push_str("];\n");
    out
}

fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, ch) in name.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}
