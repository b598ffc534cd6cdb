//! COS XML bodies (cos-protocol.md §3) as serde structs, parsed leniently with quick-xml: every
//! element is optional unless the operation is meaningless without it, unknown elements and
//! namespaces are ignored. Request bodies are written by hand with escaping, byte-compatible with
//! what the official SDKs send.

use serde::Deserialize;

/// Escapes text for an XML element body.
pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// Name of the root element of `body`, skipping whitespace (Complete sends keep-alive spaces
/// first, §3.13), the XML declaration and comments.
pub fn root_name(body: &str) -> Option<&str> {
    let mut rest = body.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("<?") {
            rest = r.split_once("?>")?.1.trim_start();
        } else if let Some(r) = rest.strip_prefix("<!--") {
            rest = r.split_once("-->")?.1.trim_start();
        } else {
            break;
        }
    }
    let r = rest.strip_prefix('<')?;
    let end = r.find(|c: char| c == '>' || c == '/' || c.is_whitespace())?;
    Some(&r[..end])
}

pub fn from_str<'de, T: Deserialize<'de>>(body: &'de str) -> Result<T, String> {
    quick_xml::de::from_str(body).map_err(|e| e.to_string())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    pub resource: String,
    pub request_id: String,
    pub trace_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ListBucketResult {
    pub name: String,
    pub encoding_type: Option<String>,
    pub prefix: String,
    pub marker: String,
    pub max_keys: Option<u32>,
    pub delimiter: Option<String>,
    pub is_truncated: bool,
    pub next_marker: Option<String>,
    /// ListObjectsV2's count of the keys and prefixes returned (absent from a V1 answer).
    pub key_count: Option<u32>,
    pub common_prefixes: Vec<PrefixEntry>,
    pub contents: Vec<ContentEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PrefixEntry {
    pub prefix: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContentEntry {
    pub key: String,
    pub last_modified: String,
    #[serde(rename = "ETag")]
    pub etag: String,
    pub size: u64,
    pub storage_class: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct InitiateMultipartUploadResult {
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CompleteMultipartUploadResult {
    pub location: String,
    pub bucket: String,
    pub key: String,
    #[serde(rename = "ETag")]
    pub etag: String,
}

/// `CopyObjectResult` and `CopyPartResult` have the same shape.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CopyResult {
    #[serde(rename = "ETag")]
    pub etag: String,
    pub last_modified: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ListPartsResult {
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    pub part_number_marker: Option<u32>,
    pub next_part_number_marker: Option<u32>,
    pub max_parts: Option<u32>,
    pub is_truncated: bool,
    pub part: Vec<PartEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PartEntry {
    pub part_number: u32,
    pub last_modified: String,
    #[serde(rename = "ETag")]
    pub etag: String,
    pub size: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ListMultipartUploadsResult {
    pub bucket: String,
    pub key_marker: String,
    pub upload_id_marker: String,
    pub next_key_marker: Option<String>,
    pub next_upload_id_marker: Option<String>,
    pub is_truncated: bool,
    pub prefix: String,
    pub upload: Vec<UploadEntry>,
    pub common_prefixes: Vec<PrefixEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UploadEntry {
    pub key: String,
    pub upload_id: String,
    pub storage_class: String,
    /// Either `Wed Jan 18 16:04:17 2017` or ISO-8601 (§10 item 12).
    pub initiated: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ListAllMyBucketsResult {
    pub buckets: BucketList,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BucketList {
    pub bucket: Vec<BucketEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BucketEntry {
    pub name: String,
    pub location: String,
    pub creation_date: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeleteResult {
    pub deleted: Vec<DeletedEntry>,
    pub error: Vec<DeleteErrorEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeletedEntry {
    pub key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeleteErrorEntry {
    pub key: String,
    pub code: String,
    pub message: String,
}

/// Request body of Complete Multipart Upload (§3.13).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CompleteMultipartUpload {
    pub part: Vec<CompletePart>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CompletePart {
    pub part_number: u32,
    #[serde(rename = "ETag")]
    pub etag: String,
}

impl CompleteMultipartUpload {
    pub fn to_xml(&self) -> String {
        let mut s = String::from("<CompleteMultipartUpload>");
        for p in &self.part {
            s.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                p.part_number,
                escape(&p.etag)
            ));
        }
        s.push_str("</CompleteMultipartUpload>");
        s
    }
}

/// Request body of DELETE Multiple (§3.5).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Delete {
    pub quiet: bool,
    pub object: Vec<DeleteObject>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeleteObject {
    pub key: String,
}

impl Delete {
    pub fn to_xml(&self) -> String {
        let mut s = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Delete><Quiet>{}</Quiet>",
            self.quiet
        );
        for o in &self.object {
            s.push_str(&format!("<Object><Key>{}</Key></Object>", escape(&o.key)));
        }
        s.push_str("</Delete>");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_bucket_result_from_the_documentation() {
        let doc = r#"<?xml version='1.0' encoding='utf-8' ?>
<ListBucketResult>
  <Name>examplebucket-1250000000</Name>
  <EncodingType>url</EncodingType>
  <Prefix>example-folder-1/</Prefix>
  <Marker/>
  <MaxKeys>1000</MaxKeys>
  <Delimiter>/</Delimiter>
  <IsTruncated>true</IsTruncated>
  <NextMarker>example-folder-3/</NextMarker>
  <CommonPrefixes><Prefix>example-folder-1/sub-folder-1/</Prefix></CommonPrefixes>
  <Contents>
    <Key>example-folder-1/example-object-1.jpg</Key>
    <LastModified>2020-12-10T03:37:30.000Z</LastModified>
    <ETag>&quot;f173c1199e3d3b53dd91223cae16fb42&quot;</ETag>
    <Size>37</Size>
    <Owner><ID>1250000000</ID><DisplayName>1250000000</DisplayName></Owner>
    <StorageClass>STANDARD</StorageClass>
  </Contents>
  <CommonPrefixes><Prefix>example-folder-1/sub-folder-2/</Prefix></CommonPrefixes>
</ListBucketResult>"#;
        let r: ListBucketResult = from_str(doc).unwrap();
        assert!(r.is_truncated);
        assert_eq!(r.next_marker.as_deref(), Some("example-folder-3/"));
        assert_eq!(r.common_prefixes.len(), 2, "interleaved lists are merged");
        assert_eq!(r.contents[0].etag, "\"f173c1199e3d3b53dd91223cae16fb42\"");
        assert_eq!(r.contents[0].size, 37);
        assert_eq!(r.marker, "");
    }

    #[test]
    fn complete_result_after_keepalive_whitespace() {
        let doc = "   \n  <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUploadResult xmlns=\"http://www.qcloud.com/document/product/436/7751\"><Location>l</Location><Bucket>b</Bucket><Key>k</Key><ETag>&quot;aa259a62513358f69e98e72e59856d88-3&quot;</ETag></CompleteMultipartUploadResult>";
        assert_eq!(root_name(doc), Some("CompleteMultipartUploadResult"));
        let r: CompleteMultipartUploadResult = from_str(doc.trim_start()).unwrap();
        assert_eq!(r.etag, "\"aa259a62513358f69e98e72e59856d88-3\"");
    }

    #[test]
    fn error_inside_ok_is_recognised() {
        let doc = "  <?xml version='1.0' encoding='utf-8' ?>\n<Error><Code>InternalError</Code><Message>m</Message><RequestId>r</RequestId></Error>";
        assert_eq!(root_name(doc), Some("Error"));
        let e: ErrorBody = from_str(doc.trim_start()).unwrap();
        assert_eq!(e.code, "InternalError");
        assert_eq!(e.request_id, "r");
    }

    #[test]
    fn request_bodies_round_trip() {
        let c = CompleteMultipartUpload {
            part: vec![
                CompletePart {
                    part_number: 1,
                    etag: "\"abc\"".into(),
                },
                CompletePart {
                    part_number: 2,
                    etag: "\"def\"".into(),
                },
            ],
        };
        let back: CompleteMultipartUpload = from_str(&c.to_xml()).unwrap();
        assert_eq!(back.part.len(), 2);
        assert_eq!(back.part[1].etag, "\"def\"");
        let d = Delete {
            quiet: true,
            object: vec![DeleteObject {
                key: "a&b<c".into(),
            }],
        };
        let back: Delete = from_str(&d.to_xml()).unwrap();
        assert!(back.quiet);
        assert_eq!(back.object[0].key, "a&b<c");
    }

    #[test]
    fn list_parts_and_uploads() {
        let doc = "<ListPartsResult><Bucket>b</Bucket><Key>k</Key><UploadId>u</UploadId><PartNumberMarker>0</PartNumberMarker><Part><PartNumber>1</PartNumber><LastModified>2020-03-25T10:07:14.000Z</LastModified><ETag>&quot;39&quot;</ETag><Size>1048576</Size></Part><NextPartNumberMarker>1</NextPartNumberMarker><MaxParts>1000</MaxParts><IsTruncated>false</IsTruncated></ListPartsResult>";
        let r: ListPartsResult = from_str(doc).unwrap();
        assert_eq!(r.part[0].size, 1048576);
        let doc = "<ListMultipartUploadsResult><Bucket>b</Bucket><Encoding-Type/><KeyMarker/><UploadIdMarker/><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated><Prefix/><Upload><Key>a</Key><UploadId>u1</UploadId><StorageClass>Standard</StorageClass><Initiated>Wed Jan 18 16:04:17 2017</Initiated></Upload></ListMultipartUploadsResult>";
        let r: ListMultipartUploadsResult = from_str(doc).unwrap();
        assert_eq!(r.upload[0].upload_id, "u1");
    }

    #[test]
    fn list_all_my_buckets_from_the_documentation() {
        // cos-protocol.md §3.9, with a second bucket as in COS's GET Service examples.
        let doc = "<ListAllMyBucketsResult>\n  <Owner><ID>qcs::cam::uin/100000000001:uin/100000000001</ID><DisplayName>100000000001</DisplayName></Owner>\n  <Buckets><Bucket><Name>examplebucket-1250000000</Name><Location>ap-beijing</Location><CreationDate>2019-05-24T11:20:10Z</CreationDate></Bucket><Bucket><Name>examplebucket3-1250000000</Name><Location>eu-frankfurt</Location><CreationDate>2019-05-24T11:53:50Z</CreationDate></Bucket></Buckets>\n</ListAllMyBucketsResult>";
        let r: ListAllMyBucketsResult = from_str(doc).unwrap();
        let b = &r.buckets.bucket;
        assert_eq!(b.len(), 2);
        assert_eq!(
            (
                b[0].name.as_str(),
                b[0].location.as_str(),
                b[0].creation_date.as_str()
            ),
            (
                "examplebucket-1250000000",
                "ap-beijing",
                "2019-05-24T11:20:10Z"
            )
        );
        assert_eq!(b[1].location, "eu-frankfurt");
        let none: ListAllMyBucketsResult =
            from_str("<ListAllMyBucketsResult><Buckets/></ListAllMyBucketsResult>").unwrap();
        assert!(none.buckets.bucket.is_empty());
    }
}
