//! The README's grpcurl recipes cannot rot: every RPC of `govledger.v1.Ledger`
//! has a `gl METHOD [JSON]` line, and each JSON request decodes (unknown
//! fields refused) as that RPC's request message in the protobuf JSON
//! mapping grpcurl sends.

use prost_reflect::{DescriptorPool, DynamicMessage};

#[test]
fn every_rpc_has_a_grpcurl_recipe_whose_request_decodes() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let pool = DescriptorPool::decode(govledger_proto::FILE_DESCRIPTOR_SET).unwrap();
    let svc = pool.get_service_by_name("govledger.v1.Ledger").unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for line in readme.lines().filter_map(|l| l.strip_prefix("gl ")) {
        let (method, json) = match line.split_once(' ') {
            Some((m, j)) => (m, j.trim().trim_matches('\'')),
            None => (line.trim(), "{}"),
        };
        let m = svc
            .methods()
            .find(|x| x.name() == method)
            .unwrap_or_else(|| panic!("README recipe for unknown RPC {method}"));
        let mut de = serde_json::Deserializer::from_str(json);
        DynamicMessage::deserialize(m.input(), &mut de)
            .unwrap_or_else(|e| panic!("README recipe {method} {json}: {e}"));
        seen.insert(method.to_owned());
    }
    let missing: Vec<String> = svc
        .methods()
        .map(|m| m.name().to_owned())
        .filter(|m| !seen.contains(m))
        .collect();
    assert!(
        missing.is_empty(),
        "RPCs without a grpcurl recipe in the README: {missing:?}"
    );
}
