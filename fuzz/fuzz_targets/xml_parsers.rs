//! The COS XML bodies of src/cos/xml.rs.
//!
//! Properties:
//! - every response and request type parses arbitrary text without panicking, and so does
//!   `root_name`, whose answer (when there is one) is a tag name that occurs in the text;
//! - the request bodies the client writes round-trip: `to_xml()` of a `CompleteMultipartUpload`
//!   or a `Delete` built from fuzz data parses back (with `from_str`, as the emulator does) to
//!   the same parts / keys, and `root_name` names the right document.
#![no_main]

use cosmount::cos::xml::{self, *};
use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;

fn parse_everything(text: &str) {
    let _ = xml::from_str::<ListBucketResult>(text);
    let _ = xml::from_str::<ErrorBody>(text);
    let _ = xml::from_str::<InitiateMultipartUploadResult>(text);
    let _ = xml::from_str::<CompleteMultipartUploadResult>(text);
    let _ = xml::from_str::<CopyResult>(text);
    let _ = xml::from_str::<ListPartsResult>(text);
    let _ = xml::from_str::<ListMultipartUploadsResult>(text);
    let _ = xml::from_str::<ListAllMyBucketsResult>(text);
    let _ = xml::from_str::<DeleteResult>(text);
    let _ = xml::from_str::<CompleteMultipartUpload>(text);
    let _ = xml::from_str::<Delete>(text);
    if let Some(name) = xml::root_name(text) {
        assert!(
            !name.contains(|c: char| c == '>' || c == '/' || c.is_whitespace()),
            "root_name({text:?}) = {name:?}"
        );
        assert!(
            text.contains(&format!("<{name}")),
            "root_name({text:?}) = {name:?}"
        );
    }
}

fn round_trip(u: &mut Unstructured) -> ArbResult<()> {
    let parts: Vec<(u32, String)> = u.arbitrary()?;
    let c = CompleteMultipartUpload {
        part: parts
            .iter()
            .map(|(n, e)| CompletePart {
                part_number: *n,
                etag: e.clone(),
            })
            .collect(),
    };
    let doc = c.to_xml();
    assert_eq!(xml::root_name(&doc), Some("CompleteMultipartUpload"));
    let back: CompleteMultipartUpload =
        xml::from_str(&doc).unwrap_or_else(|e| panic!("our own {doc:?} does not parse: {e}"));
    let got: Vec<(u32, String)> = back
        .part
        .iter()
        .map(|p| (p.part_number, p.etag.clone()))
        .collect();
    assert_eq!(
        got, parts,
        "CompleteMultipartUpload round trip through {doc:?}"
    );

    let quiet: bool = u.arbitrary()?;
    let keys: Vec<String> = u.arbitrary()?;
    let d = Delete {
        quiet,
        object: keys
            .iter()
            .map(|k| DeleteObject { key: k.clone() })
            .collect(),
    };
    let doc = d.to_xml();
    assert_eq!(xml::root_name(&doc), Some("Delete"));
    let back: Delete =
        xml::from_str(&doc).unwrap_or_else(|e| panic!("our own {doc:?} does not parse: {e}"));
    assert_eq!(back.quiet, quiet, "Delete round trip through {doc:?}");
    let got: Vec<String> = back.object.into_iter().map(|o| o.key).collect();
    assert_eq!(got, keys, "Delete round trip through {doc:?}");
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    // The first byte chooses: parse the rest as a document, or build request bodies from it.
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        match std::str::from_utf8(rest) {
            Ok(text) => parse_everything(text),
            Err(_) => parse_everything(&String::from_utf8_lossy(rest)),
        }
    } else {
        let _ = round_trip(&mut Unstructured::new(rest));
    }
});
