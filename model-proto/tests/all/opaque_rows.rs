//! Row coders whose schema Oxbeam cannot read: an error on their own, opaque
//! bytes inside a length prefix (as runners send Beam Python's rows with
//! `pythonsdk_any` fields, whose values are pickled).

use oxbeam_model::coders::{Coder, CoderError};
use oxbeam_model::pipeline::{self, field_type::TypeInfo};
use oxbeam_model::urns::standard_coders as urn;
use prost::Message;

fn components() -> pipeline::Components {
    // A Beam Python schema with one field of the Any logical type, which
    // has no representation type.
    let schema = pipeline::Schema {
        fields: vec![pipeline::Field {
            name: "sign".into(),
            r#type: Some(pipeline::FieldType {
                nullable: false,
                type_info: Some(TypeInfo::LogicalType(Box::new(pipeline::LogicalType {
                    urn: "beam:logical:pythonsdk_any:v1".into(),
                    ..Default::default()
                }))),
            }),
            ..Default::default()
        }],
        id: "s".into(),
        ..Default::default()
    };
    let coder = |urn: &str, payload: Vec<u8>, components: &[&str]| pipeline::Coder {
        spec: Some(pipeline::FunctionSpec {
            urn: urn.into(),
            payload: payload.into(),
        }),
        component_coder_ids: components.iter().map(|c| c.to_string()).collect(),
    };
    pipeline::Components {
        coders: [
            (
                "row".to_string(),
                coder(urn::ROW, schema.encode_to_vec(), &[]),
            ),
            (
                "lp".to_string(),
                coder(urn::LENGTH_PREFIX, vec![], &["row"]),
            ),
        ]
        .into(),
        ..Default::default()
    }
}

#[test]
fn an_unreadable_row_schema_is_an_error_on_its_own() {
    let err = Coder::from_proto("row", &components()).unwrap_err();
    assert!(matches!(err, CoderError::BadSchema(_)), "{err}");
}

#[test]
fn an_unreadable_row_inside_a_length_prefix_is_opaque() {
    let coder = Coder::from_proto("lp", &components()).unwrap();
    let Coder::LengthPrefix(inner) = &coder else {
        panic!("{coder:?}")
    };
    assert!(
        matches!(&**inner, Coder::Opaque { urn, .. } if urn == urn::ROW),
        "{inner:?}"
    );
}
