//! The emitted pipeline proto.

use oxbeam::PTransform;
use oxbeam_model::oxbeam::NativeFunctionPayload;
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns;
use prost::Message;

use crate::common::pipeline;

struct Doubled;

impl PTransform<oxbeam::PCollection<i64>> for Doubled {
    type Output = oxbeam::PCollection<i64>;
    fn expand(self, xs: &oxbeam::PCollection<i64>) -> Self::Output {
        xs.map("Double", |x: &i64| x * 2)
    }
}

#[test]
fn composites_keep_subtransforms_and_native_names() {
    let p = pipeline();
    let xs = p.create("Xs", vec![1i64, 2]).apply("MyComposite", Doubled);
    xs.with_keys("Key", |x: &i64| *x % 2)
        .apply("Sum", oxbeam::combiners::Sum::per_key());
    let proto = p.to_proto();
    let c = proto.components.as_ref().unwrap();
    let comp = &c.transforms["MyComposite"];
    assert_eq!(comp.subtransforms, vec!["MyComposite/Double".to_string()]);
    assert_eq!(
        comp.outputs.values().next(),
        c.transforms["MyComposite/Double"].outputs.values().next()
    );
    assert!(proto.root_transform_ids.contains(&"Xs".to_string()));

    let map = &c.transforms["MyComposite/Double"];
    assert_eq!(
        map.spec.as_ref().unwrap().urn,
        urns::standard_p_transforms::primitives::PAR_DO
    );
    assert_eq!(map.environment_id, oxbeam::NATIVE_ENVIRONMENT_ID);
    let pardo = pb::ParDoPayload::decode(&map.spec.as_ref().unwrap().payload[..]).unwrap();
    let native = NativeFunctionPayload::decode(&pardo.do_fn.unwrap().payload[..]).unwrap();
    assert_eq!(native.name, "MyComposite/Double");
    assert!(p.registry().function_names().contains(&native.name));
    assert!(
        oxbeam::global_registry()
            .function_names()
            .contains(&native.name)
    );

    let combine = &c.transforms["Sum/CombinePerKey"];
    assert_eq!(
        combine.spec.as_ref().unwrap().urn,
        urns::standard_p_transforms::composites::COMBINE_PER_KEY
    );
    let payload = pb::CombinePayload::decode(&combine.spec.as_ref().unwrap().payload[..]).unwrap();
    assert_eq!(
        c.coders[&payload.accumulator_coder_id]
            .spec
            .as_ref()
            .unwrap()
            .urn,
        urns::standard_coders::VARINT
    );
    let subs: Vec<&str> = combine.subtransforms.iter().map(String::as_str).collect();
    assert_eq!(
        subs,
        vec![
            "Sum/CombinePerKey/GroupByKey",
            "Sum/CombinePerKey/CombineValues"
        ]
    );
    assert_eq!(
        c.transforms[subs[1]].spec.as_ref().unwrap().urn,
        urns::standard_p_transforms::combine_components::COMBINE_GROUPED_VALUES
    );
    assert_eq!(
        c.environments[oxbeam::NATIVE_ENVIRONMENT_ID].urn,
        urns::oxbeam_environments::NATIVE
    );
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Opaque(u8);
oxbeam::serde_element!(Opaque);

#[test]
fn serde_coders_are_length_prefixed_in_the_proto() {
    let p = pipeline();
    let xs = p.create("Xs", vec![Opaque(1)]);
    let proto = p.to_proto();
    let c = proto.components.unwrap();
    let coder = &c.coders[&c.pcollections[xs.id()].coder_id];
    assert_eq!(
        coder.spec.as_ref().unwrap().urn,
        urns::standard_coders::LENGTH_PREFIX
    );
    let inner = &c.coders[&coder.component_coder_ids[0]];
    assert_eq!(
        inner.spec.as_ref().unwrap().urn,
        urns::oxbeam_coders::SERDE_BINCODE
    );
}

#[test]
fn duplicate_labels_get_unique_names() {
    let p = pipeline();
    let a = p
        .create("Xs", vec![1i64])
        .map("Map", |x: &i64| *x)
        .map("Map", |x: &i64| *x);
    let proto = p.to_proto();
    let names: Vec<String> = proto
        .components
        .unwrap()
        .transforms
        .into_keys()
        .filter(|n| n.starts_with("Map"))
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let _ = a;
}
