"""Render .proto source from the FileDescriptorProtos shipped in apache-beam.

Oxbeam keeps its own .proto files; this tool only extracts the interface facts
(names, numbers, types, options) from the descriptors of the pinned apache-beam
package so the hand-annotated files can be (re)checked against them. Comments in
the committed protos are Oxbeam's own.

Usage: python scripts/dev/render_protos.py OUT_DIR
"""
import importlib
import os
import sys

from google.protobuf import descriptor_pb2, text_format
from google.protobuf import text_encoding

MODULES = [
    "org.apache.beam.model.pipeline.v1.endpoints_pb2",
    "org.apache.beam.model.pipeline.v1.beam_runner_api_pb2",
    "org.apache.beam.model.pipeline.v1.external_transforms_pb2",
    "org.apache.beam.model.pipeline.v1.metrics_pb2",
    "org.apache.beam.model.pipeline.v1.schema_pb2",
    "org.apache.beam.model.pipeline.v1.standard_window_fns_pb2",
    "org.apache.beam.model.fn_execution.v1.beam_fn_api_pb2",
    "org.apache.beam.model.fn_execution.v1.beam_provision_api_pb2",
    "org.apache.beam.model.job_management.v1.beam_artifact_api_pb2",
    "org.apache.beam.model.job_management.v1.beam_expansion_api_pb2",
    "org.apache.beam.model.job_management.v1.beam_job_api_pb2",
]

T = descriptor_pb2.FieldDescriptorProto
SCALAR = {
    T.TYPE_DOUBLE: "double", T.TYPE_FLOAT: "float", T.TYPE_INT64: "int64",
    T.TYPE_UINT64: "uint64", T.TYPE_INT32: "int32", T.TYPE_FIXED64: "fixed64",
    T.TYPE_FIXED32: "fixed32", T.TYPE_BOOL: "bool", T.TYPE_STRING: "string",
    T.TYPE_BYTES: "bytes", T.TYPE_UINT32: "uint32", T.TYPE_SFIXED32: "sfixed32",
    T.TYPE_SFIXED64: "sfixed64", T.TYPE_SINT32: "sint32", T.TYPE_SINT64: "sint64",
}


def opt_value(fd, value):
    if fd.type == fd.TYPE_MESSAGE:
        return "{ " + text_format.MessageToString(value, as_one_line=True) + " }"
    if fd.type == fd.TYPE_ENUM:
        return fd.enum_type.values_by_number[value].name
    if fd.type == fd.TYPE_BOOL:
        return "true" if value else "false"
    if fd.type in (fd.TYPE_STRING, fd.TYPE_BYTES):
        return '"' + text_encoding.CEscape(value, as_utf8=True) + '"'
    return str(value)


def render_options(opts):
    out = []
    for fd, value in opts.ListFields():
        name = "(" + fd.full_name + ")" if fd.is_extension else fd.name
        values = value if fd.is_repeated else [value]
        for v in values:
            out.append(f"{name} = {opt_value(fd, v)}")
    return out


def type_name(f):
    if f.type in (T.TYPE_MESSAGE, T.TYPE_ENUM):
        return f.type_name  # fully qualified with leading dot
    return SCALAR[f.type]


def render_enum(e, ind, live):
    lines = [f"{ind}enum {e.name} {{"]
    if e.options.allow_alias:
        lines.append(f"{ind}  option allow_alias = true;")
    for v in e.value:
        lv = [x for x in live.values if x.name == v.name][0]
        opts = render_options(lv.GetOptions())
        suffix = (" [" + ", ".join(opts) + "]") if opts else ""
        lines.append(f"{ind}  {v.name} = {v.number}{suffix};")
    for r in e.reserved_range:
        lines.append(f"{ind}  reserved {r.start} to {r.end};" if r.start != r.end else f"{ind}  reserved {r.start};")
    lines.append(f"{ind}}}")
    return lines


def render_message(m, ind, live):
    lines = [f"{ind}message {m.name} {{"]
    maps = {n.name: n for n in m.nested_type if n.options.map_entry}
    for n in m.nested_type:
        if n.options.map_entry:
            continue
        lines += render_message(n, ind + "  ", live.nested_types_by_name[n.name])
    for e in m.enum_type:
        lines += render_enum(e, ind + "  ", live.enum_types_by_name[e.name])
    real_oneofs = {}
    for f in m.field:
        if f.HasField("oneof_index") and not f.proto3_optional:
            real_oneofs.setdefault(f.oneof_index, []).append(f)
    done_oneofs = set()

    def field_line(f, ind2, in_oneof):
        opts = render_options(live.fields_by_name[f.name].GetOptions())
        suffix = (" [" + ", ".join(opts) + "]") if opts else ""
        if f.type == T.TYPE_MESSAGE and f.type_name.split(".")[-1] in maps and f.label == T.LABEL_REPEATED \
                and f.type_name.startswith("." + live.full_name + "."):
            entry = maps[f.type_name.split(".")[-1]]
            k, v = entry.field[0], entry.field[1]
            return f"{ind2}map<{type_name(k)}, {type_name(v)}> {f.name} = {f.number}{suffix};"
        label = ""
        if not in_oneof:
            if f.label == T.LABEL_REPEATED:
                label = "repeated "
            elif f.proto3_optional:
                label = "optional "
        return f"{ind2}{label}{type_name(f)} {f.name} = {f.number}{suffix};"

    for f in m.field:
        if f.HasField("oneof_index") and not f.proto3_optional:
            idx = f.oneof_index
            if idx in done_oneofs:
                continue
            done_oneofs.add(idx)
            lines.append(f"{ind}  oneof {m.oneof_decl[idx].name} {{")
            for of in real_oneofs[idx]:
                lines.append(field_line(of, ind + "    ", True))
            lines.append(f"{ind}  }}")
        else:
            lines.append(field_line(f, ind + "  ", False))
    for r in m.reserved_range:
        end = r.end - 1
        lines.append(f"{ind}  reserved {r.start};" if r.start == end else f"{ind}  reserved {r.start} to {end};")
    for n in m.reserved_name:
        lines.append(f'{ind}  reserved "{n}";')
    for ext in m.extension:
        lines.append(f"{ind}  // nested extension omitted: {ext.name}")
    lines.append(f"{ind}}}")
    return lines


def render(mod):
    fdp = descriptor_pb2.FileDescriptorProto.FromString(mod.DESCRIPTOR.serialized_pb)
    live = mod.DESCRIPTOR
    out = ['syntax = "proto3";', "", f"package {fdp.package};", ""]
    for d in fdp.dependency:
        out.append(f'import "{d}";')
    out.append("")
    if fdp.options.java_package:
        out.append(f'option java_package = "{fdp.options.java_package}";')
    if fdp.options.go_package:
        out.append(f'option go_package = "{fdp.options.go_package}";')
    out.append("")
    exts = {}
    for e in fdp.extension:
        exts.setdefault(e.extendee, []).append(e)
    for extendee, fields in exts.items():
        out.append(f"extend {extendee} {{")
        for f in fields:
            out.append(f"  {type_name(f)} {f.name} = {f.number};")
        out.append("}")
        out.append("")
    for e in fdp.enum_type:
        out += render_enum(e, "", live.enum_types_by_name[e.name])
        out.append("")
    for m in fdp.message_type:
        out += render_message(m, "", live.message_types_by_name[m.name])
        out.append("")
    for s in fdp.service:
        out.append(f"service {s.name} {{")
        for meth in s.method:
            ci = "stream " if meth.client_streaming else ""
            so = "stream " if meth.server_streaming else ""
            out.append(f"  rpc {meth.name}({ci}{meth.input_type}) returns ({so}{meth.output_type});")
        out.append("}")
        out.append("")
    return fdp.name, "\n".join(out)


def main():
    out_dir = sys.argv[1]
    for m in MODULES:
        mod = importlib.import_module("apache_beam.portability.api." + m)
        name, text = render(mod)
        path = os.path.join(out_dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        print(path)


if __name__ == "__main__":
    main()
