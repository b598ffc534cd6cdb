//! The S3 dialect's listing against a server that ignores `list-type=2` (a V1 server): the
//! client sees the V1 answer, asks again in V1, and lists in V1 from then on.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use cosmount::cos::auth::Credentials;
use cosmount::cos::dialect::Api;
use cosmount::cos::{ClientConfig, CosClient, Endpoint, ListObjects, ObjectClient};

const V1_PAGE: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<ListBucketResult><Name>b</Name><Prefix></Prefix><Marker></Marker><MaxKeys>1000</MaxKeys>\
<IsTruncated>false</IsTruncated><Contents><Key>k</Key><Size>1</Size><ETag>\"e\"</ETag>\
<LastModified>2026-01-01T00:00:00.000Z</LastModified></Contents></ListBucketResult>";

/// Serves every request on 127.0.0.1 with `V1_PAGE`, recording each request line.
fn v1_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let lines = Arc::new(Mutex::new(Vec::new()));
    let seen = lines.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut first = String::new();
                    if reader.read_line(&mut first).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok() && line != "\r\n" {
                        line.clear();
                    }
                    seen.lock().unwrap().push(first.trim().to_string());
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{V1_PAGE}",
                        V1_PAGE.len()
                    );
                    if conn.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, lines)
}

#[test]
fn a_v1_answer_to_list_objects_v2_switches_to_v1() {
    let (url, lines) = v1_server();
    let client = CosClient::new(ClientConfig {
        bucket: "b-bucket".into(),
        endpoint: Endpoint::Url(url.parse().unwrap()),
        credentials: Credentials::new("AKID", "secret"),
        api: Api::S3,
        ..Default::default()
    })
    .unwrap();
    common::runtime().block_on(async {
        for _ in 0..2 {
            let page = client
                .list_objects(ListObjects::new("").marker("a"))
                .await
                .unwrap();
            assert_eq!(page.objects.len(), 1);
            assert_eq!(page.objects[0].key, "k");
        }
    });
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].contains("list-type=2") && lines[0].contains("start-after=a"),
        "{lines:?}"
    );
    for l in &lines[1..] {
        assert!(
            l.starts_with("GET /b-bucket/?") && !l.contains("list-type") && l.contains("marker=a"),
            "{lines:?}"
        );
    }
}
