//! Amendment request bodies, written straight from identifier buffers.
//!
//! A body of 50,000 SHA-256 identifiers is about 3.4 MB of JSON; writing the hex digits
//! into one preallocated buffer avoids a `String` per identifier and a serde tree.

use crate::identifiers::{IdentifierSet, IdentifierType, write_hex};

use super::Operation;

/// Criteo API that the body is for. The two APIs name identifier types differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// Marketing Solutions `ContactlistAmendment`.
    MarketingSolutions,
    /// Retail Media `AddRemoveContactlist`.
    RetailMedia,
}

/// Builds the JSON body amending `set[range]`.
pub fn amendment_body(
    api: Api,
    operation: Operation,
    identifier_type: IdentifierType,
    gum_caller_id: Option<i64>,
    set: &IdentifierSet,
    range: std::ops::Range<usize>,
) -> Vec<u8> {
    let count = range.len();
    let mut out = Vec::with_capacity(200 + count * 67);

    let (envelope_type, type_name) = match api {
        Api::MarketingSolutions => (
            "ContactlistAmendment",
            identifier_type
                .marketing_solutions_name()
                .expect("validated: the type exists in Marketing Solutions"),
        ),
        Api::RetailMedia => ("AddRemoveContactlist", identifier_type.retail_media_name()),
    };
    out.extend_from_slice(b"{\"data\":{\"type\":\"");
    out.extend_from_slice(envelope_type.as_bytes());
    out.extend_from_slice(b"\",\"attributes\":{\"operation\":\"");
    out.extend_from_slice(operation.as_str().as_bytes());
    out.extend_from_slice(b"\",\"identifierType\":\"");
    out.extend_from_slice(type_name.as_bytes());
    out.extend_from_slice(b"\",");
    if let (Api::MarketingSolutions, IdentifierType::Gum, Some(caller)) =
        (api, identifier_type, gum_caller_id)
    {
        out.extend_from_slice(format!("\"gumCallerId\":{caller},").as_bytes());
    }

    out.extend_from_slice(b"\"identifiers\":[");
    match set {
        IdentifierSet::Hashed(digests) => {
            for (position, digest) in digests[range].iter().enumerate() {
                if position > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                write_hex(digest, &mut out);
                out.push(b'"');
            }
        }
        IdentifierSet::Clear(texts) => {
            for (position, text) in texts[range].iter().enumerate() {
                if position > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut out, text.as_ref()).expect("writing to a Vec cannot fail");
            }
        }
    }
    out.extend_from_slice(b"]}}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identifiers::parse_hex_digest;

    #[test]
    fn hashed_body_matches_contract_shape() {
        let digest =
            parse_hex_digest("375320dd9ae7ed408002f3768e16cb5f28c861062fd50dff9a3bff62e9dce4ef")
                .unwrap();
        let set = IdentifierSet::Hashed(vec![digest]);
        let body = amendment_body(
            Api::MarketingSolutions,
            Operation::Add,
            IdentifierType::Email,
            None,
            &set,
            0..1,
        );
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["data"]["type"], "ContactlistAmendment");
        assert_eq!(value["data"]["attributes"]["operation"], "add");
        assert_eq!(value["data"]["attributes"]["identifierType"], "email");
        assert_eq!(
            value["data"]["attributes"]["identifiers"][0],
            "375320dd9ae7ed408002f3768e16cb5f28c861062fd50dff9a3bff62e9dce4ef"
        );
    }

    #[test]
    fn clear_body_escapes_and_slices() {
        let set = IdentifierSet::Clear(vec!["a\"b".into(), "c".into(), "d".into()]);
        let body = amendment_body(
            Api::RetailMedia,
            Operation::Remove,
            IdentifierType::CustomerId,
            None,
            &set,
            0..2,
        );
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["data"]["type"], "AddRemoveContactlist");
        assert_eq!(value["data"]["attributes"]["identifierType"], "CustomerId");
        assert_eq!(value["data"]["attributes"]["identifiers"], serde_json::json!(["a\"b", "c"]));
    }

    #[test]
    fn gum_body_carries_caller_id() {
        let set = IdentifierSet::Clear(vec!["g1".into()]);
        let body = amendment_body(
            Api::MarketingSolutions,
            Operation::Add,
            IdentifierType::Gum,
            Some(329739),
            &set,
            0..1,
        );
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["data"]["attributes"]["gumCallerId"], 329739);
    }
}
