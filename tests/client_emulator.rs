//! The Rust client against the emulator over real HTTP on 127.0.0.1: every operation,
//! pagination, multipart rules, SSE, error mapping, retries under injected faults, and bad
//! input to the emulator answered with COS errors.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use common::{BUCKET, TestEmulator, pattern, runtime};
use cosmount::cos::auth::{self, KeyTime, SignRequest};
use cosmount::cos::client::{CompletedPart, list_all};
use cosmount::cos::crc64;
use cosmount::cos::retry::RetryPolicy;
use cosmount::cos::sse::{Sse, SseCKey};
use cosmount::cos::{
    Body, ClientConfig, CopyObject, CosClient, CosError, Endpoint, GetObject, ListObjects,
    ObjectClient, ObjectMetadata, PutObject,
};
use futures::TryStreamExt;

const MIB: usize = 1024 * 1024;

fn meta(pairs: &[(&str, &str)]) -> ObjectMetadata {
    ObjectMetadata {
        content_type: Some("text/plain".into()),
        user: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

#[test]
fn object_round_trip_with_metadata_ranges_and_conditions() {
    let emu = TestEmulator::start();
    let c = emu.client();
    runtime().block_on(async {
        let data = pattern(100_000, 1);
        let put = c
            .put_object(
                PutObject::new("dir/a.bin", Body::Bytes(Bytes::from(data.clone())))
                    .metadata(meta(&[("mode", "33261"), ("mtime", "1700000000.5")]))
                    .with_md5(),
            )
            .await
            .unwrap();
        assert_eq!(put.crc64, Some(crc64::checksum(&data)));
        let info = c.head_object("dir/a.bin").await.unwrap();
        assert_eq!(info.size, 100_000);
        assert_eq!(info.etag, put.etag);
        assert_eq!(info.user.get("mode").map(String::as_str), Some("33261"));
        assert_eq!(info.content_type.as_deref(), Some("text/plain"));

        let (_, body) = c
            .get_object_bytes(GetObject::new("dir/a.bin"))
            .await
            .unwrap();
        assert_eq!(&body[..], &data[..]);
        let (ri, part) = c
            .get_object_bytes(GetObject::new("dir/a.bin").range(1000, 5000))
            .await
            .unwrap();
        assert_eq!(&part[..], &data[1000..5000]);
        assert_eq!(ri.size, 100_000, "size from Content-Range");

        let out = c
            .get_object(GetObject::new("dir/a.bin").range_from(99_000))
            .await
            .unwrap();
        assert_eq!(out.start, 99_000);
        let chunks: Vec<Bytes> = out.body.try_collect().await.unwrap();
        assert_eq!(chunks.concat(), &data[99_000..]);

        let stale = c
            .get_object_bytes(GetObject::new("dir/a.bin").if_match("\"0000\""))
            .await
            .unwrap_err();
        assert!(stale.is_precondition_failed(), "{stale}");
        let missing = c.head_object("nope").await.unwrap_err();
        assert!(missing.is_not_found());
        let range_err = c
            .get_object_bytes(GetObject::new("dir/a.bin").range(200_000, 200_010))
            .await
            .unwrap_err();
        assert_eq!(range_err.status(), Some(416));

        c.delete_object("dir/a.bin").await.unwrap();
        c.delete_object("dir/a.bin").await.unwrap();
        assert!(c.head_object("dir/a.bin").await.unwrap_err().is_not_found());

        // A corrupted body is refused, and nothing is stored.
        let bad = PutObject::new("bad", Body::Bytes(Bytes::from_static(b"abc")))
            .content_md5("AAAAAAAAAAAAAAAAAAAAAA==");
        assert_eq!(
            c.put_object(bad).await.unwrap_err().code(),
            Some("BadDigest")
        );
        assert!(c.head_object("bad").await.unwrap_err().is_not_found());
    });
}

#[test]
fn user_metadata_over_cos_limits_is_refused() {
    let emu = TestEmulator::start();
    let c = emu.client();
    runtime().block_on(async {
        let put = |m: ObjectMetadata| {
            c.put_object(PutObject::new("m", Body::Bytes(Bytes::from_static(b"x"))).metadata(m))
        };
        let one = "v".repeat(2100);
        let e = put(meta(&[("big", &one)])).await.unwrap_err();
        assert_eq!(e.code(), Some("MetadataTooLarge"), "{e}");
        let half = "v".repeat(1500);
        let e = put(meta(&[("a", &half), ("b", &half), ("c", &half)]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("MetadataTooLarge"), "{e}");
        put(meta(&[("a", &half), ("b", &half)])).await.unwrap();
        let e = c
            .create_multipart_upload("mp", &meta(&[("big", &one)]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("MetadataTooLarge"), "{e}");
    });
}

#[test]
fn storage_classes_are_stored_dropped_by_copies_unless_resent_and_archives_refuse_reads() {
    let emu = TestEmulator::start();
    let c = emu.client();
    runtime().block_on(async {
        let ia = ObjectMetadata {
            storage_class: Some("STANDARD_IA".into()),
            ..Default::default()
        };
        c.put_object(PutObject::new("ia", Body::Bytes(Bytes::from_static(b"x"))).metadata(ia))
            .await
            .unwrap();
        let info = c.head_object("ia").await.unwrap();
        assert_eq!(info.storage_class.as_deref(), Some("STANDARD_IA"));
        let page = c.list_objects(ListObjects::new("ia")).await.unwrap();
        assert_eq!(
            page.objects[0].storage_class.as_deref(),
            Some("STANDARD_IA")
        );
        // A copy is STANDARD unless it names a class (cos-protocol.md rule 9).
        c.copy_object(CopyObject::new("ia", "copy")).await.unwrap();
        assert_eq!(c.head_object("copy").await.unwrap().storage_class, None);
        c.copy_object(CopyObject::new("ia", "kept").storage_class(info.storage_class.clone()))
            .await
            .unwrap();
        assert_eq!(
            c.head_object("kept")
                .await
                .unwrap()
                .storage_class
                .as_deref(),
            Some("STANDARD_IA")
        );
        let cold = ObjectMetadata {
            storage_class: Some("DEEP_ARCHIVE".into()),
            ..Default::default()
        };
        c.put_object(PutObject::new("cold", Body::Bytes(Bytes::from_static(b"x"))).metadata(cold))
            .await
            .unwrap();
        c.head_object("cold").await.unwrap();
        let e = c
            .get_object_bytes(GetObject::new("cold"))
            .await
            .unwrap_err();
        assert_eq!(
            (e.status(), e.code()),
            (Some(403), Some("InvalidObjectState"))
        );
    });
}

#[test]
fn awkward_keys_round_trip() {
    let emu = TestEmulator::start();
    let c = emu.client();
    let keys = [
        "a b/中文 (1)+~.txt",
        "x/../y",
        "./dot",
        "p//q",
        "sp ace+plus%percent&amp=eq?q#h",
    ];
    runtime().block_on(async {
        for (i, k) in keys.iter().enumerate() {
            c.put_object(PutObject::new(
                *k,
                Body::Bytes(Bytes::from(vec![i as u8; i + 1])),
            ))
            .await
            .unwrap();
        }
        for (i, k) in keys.iter().enumerate() {
            let (_, b) = c.get_object_bytes(GetObject::new(*k)).await.unwrap();
            assert_eq!(b.len(), i + 1, "{k}");
        }
        let page = c.list_objects(ListObjects::new("")).await.unwrap();
        let mut listed: Vec<String> = page.objects.iter().map(|o| o.key.clone()).collect();
        listed.sort();
        let mut expected: Vec<String> = keys.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(listed, expected);
    });
}

#[test]
fn listing_pages_with_and_without_delimiter() {
    let emu = TestEmulator::start();
    let c = emu.client();
    runtime().block_on(async {
        let mut files = Vec::new();
        for i in 0..250 {
            files.push(format!("top/f{i:04}"));
        }
        for d in 0..30 {
            files.push(format!("top/d{d:02}/x"));
            files.push(format!("top/d{d:02}/y/z"));
        }
        files.push("top/d05".into()); // a file beside a directory of the same name
        let puts = files.iter().map(|k| {
            let c = c.clone();
            let k = k.clone();
            async move {
                c.put_object(PutObject::new(k, Body::Bytes(Bytes::from_static(b"x"))))
                    .await
                    .unwrap()
            }
        });
        futures::future::join_all(puts).await;

        let pages: Vec<_> = list_all(
            c.clone(),
            ListObjects::new("top/").delimiter("/").max_keys(37),
        )
        .try_collect()
        .await
        .unwrap();
        assert!(pages.len() > 5);
        let mut names = Vec::new();
        let mut dirs = Vec::new();
        for p in &pages {
            assert!(p.objects.len() + p.common_prefixes.len() <= 37);
            names.extend(p.objects.iter().map(|o| o.key.clone()));
            dirs.extend(p.common_prefixes.iter().cloned());
        }
        assert_eq!(names.len(), 251, "250 files + top/d05");
        assert_eq!(dirs.len(), 30, "no common prefix twice across pages");
        let mut sorted = dirs.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), 30);

        let all: Vec<_> = list_all(c.clone(), ListObjects::new("top/").max_keys(100))
            .try_collect()
            .await
            .unwrap();
        let n: usize = all.iter().map(|p| p.objects.len()).sum();
        assert_eq!(n, files.len());
    });
}

#[test]
fn multipart_upload_rules_and_part_copy() {
    let emu = TestEmulator::start();
    let c = emu.client();
    runtime().block_on(async {
        let data = pattern(5 * MIB / 2, 7);
        let m = meta(&[("mode", "33188")]);
        let id = c.create_multipart_upload("big", &m).await.unwrap();
        let p1 = c
            .upload_part(
                "big",
                &id,
                1,
                Body::Bytes(Bytes::copy_from_slice(&data[..MIB])),
            )
            .await
            .unwrap();
        let p2 = c
            .upload_part(
                "big",
                &id,
                2,
                Body::Bytes(Bytes::copy_from_slice(&data[MIB..2 * MIB])),
            )
            .await
            .unwrap();
        let p3 = c
            .upload_part(
                "big",
                &id,
                3,
                Body::Bytes(Bytes::copy_from_slice(&data[2 * MIB..])),
            )
            .await
            .unwrap();
        let listed = c.list_parts("big", &id, 0).await.unwrap();
        assert_eq!(listed.parts.len(), 3);
        let uploads = c.list_multipart_uploads("", "", "").await.unwrap();
        assert_eq!(uploads.uploads.len(), 1);
        assert_eq!(uploads.uploads[0].key, "big");

        // Wrong ETag and gaps are refused; the upload survives a refused Complete.
        let wrong = [CompletedPart {
            part_number: 1,
            etag: "\"bad\"".into(),
        }];
        let e = c
            .complete_multipart_upload("big", &id, &wrong)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("InvalidPart"));
        let gap = [
            CompletedPart {
                part_number: 1,
                etag: p1.etag.clone(),
            },
            CompletedPart {
                part_number: 3,
                etag: p3.etag.clone(),
            },
        ];
        let e = c
            .complete_multipart_upload("big", &id, &gap)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("InvalidPart"));

        let parts = [(1, p1), (2, p2), (3, p3)].map(|(n, p)| CompletedPart {
            part_number: n,
            etag: p.etag,
        });
        let done = c
            .complete_multipart_upload("big", &id, &parts)
            .await
            .unwrap();
        assert!(done.etag.ends_with("-3\""), "{}", done.etag);
        assert_eq!(
            done.crc64,
            Some(crc64::checksum(&data)),
            "CRC combined from parts"
        );
        let (info, body) = c.get_object_bytes(GetObject::new("big")).await.unwrap();
        assert_eq!(&body[..], &data[..]);
        assert_eq!(info.user.get("mode").map(String::as_str), Some("33188"));
        assert_eq!(emu.emulator.upload_count(BUCKET), 0);

        // A small part that is not the last is refused.
        let id = c.create_multipart_upload("small", &m).await.unwrap();
        let a = c
            .upload_part("small", &id, 1, Body::Bytes(Bytes::from_static(b"tiny")))
            .await
            .unwrap();
        let b = c
            .upload_part("small", &id, 2, Body::Bytes(Bytes::from_static(b"tail")))
            .await
            .unwrap();
        let e = c
            .complete_multipart_upload(
                "small",
                &id,
                &[
                    CompletedPart {
                        part_number: 1,
                        etag: a.etag,
                    },
                    CompletedPart {
                        part_number: 2,
                        etag: b.etag,
                    },
                ],
            )
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("EntityTooSmall"));
        c.abort_multipart_upload("small", &id).await.unwrap();
        let e = c
            .upload_part("small", &id, 3, Body::Bytes(Bytes::from_static(b"x")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("NoSuchUpload"));

        // Upload Part - Copy: a new object from a range of "big" plus fresh bytes.
        let id = c.create_multipart_upload("appended", &m).await.unwrap();
        let c1 = c
            .upload_part_copy("appended", &id, 1, "big", Some((0, 2 * MIB as u64)), None)
            .await
            .unwrap();
        let c2 = c
            .upload_part(
                "appended",
                &id,
                2,
                Body::Bytes(Bytes::from_static(b"tail!")),
            )
            .await
            .unwrap();
        c.complete_multipart_upload(
            "appended",
            &id,
            &[
                CompletedPart {
                    part_number: 1,
                    etag: c1.etag,
                },
                CompletedPart {
                    part_number: 2,
                    etag: c2.etag,
                },
            ],
        )
        .await
        .unwrap();
        let (_, body) = c
            .get_object_bytes(GetObject::new("appended"))
            .await
            .unwrap();
        assert_eq!(&body[..2 * MIB], &data[..2 * MIB]);
        assert_eq!(&body[2 * MIB..], b"tail!");
    });
}

/// Complete Multipart Upload keeps an object as its parts (hard links, no copy of the bytes) and
/// a copy links them again: every way of reading such an object sees one run of bytes, and
/// deleting every object leaves no data behind, also across a restart.
#[test]
fn objects_kept_as_their_parts_read_copy_and_delete_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = cosmount::emulator::EmulatorConfig {
        data_dir: dir.path().join("data"),
        ..Default::default()
    };
    let start = || TestEmulator {
        emulator: cosmount::emulator::Emulator::start_background(config.clone()).unwrap(),
        dir: tempfile::tempdir().unwrap(),
        config: config.clone(),
    };
    let data = pattern(3 * MIB + 12345, 11);
    let emu = start();
    let c = emu.client();
    runtime().block_on(async {
        let id = c.create_multipart_upload("big", &meta(&[])).await.unwrap();
        let mut parts = Vec::new();
        for (i, chunk) in data.chunks(MIB + 7).enumerate() {
            let n = i as u32 + 1;
            let body = Body::Bytes(Bytes::copy_from_slice(chunk));
            let etag = c.upload_part("big", &id, n, body).await.unwrap().etag;
            parts.push(CompletedPart {
                part_number: n,
                etag,
            });
        }
        assert_eq!(parts.len(), 4);
        c.complete_multipart_upload("big", &id, &parts)
            .await
            .unwrap();
        let edge = MIB as u64 + 7;
        for (a, b) in [
            (0, 1),
            (edge - 1, edge + 1),
            (edge - 5, 2 * edge + 3),
            (3 * edge, data.len() as u64),
            (0, data.len() as u64),
        ] {
            let (_, got) = c
                .get_object_bytes(GetObject::new("big").range(a, b))
                .await
                .unwrap();
            assert!(got[..] == data[a as usize..b as usize], "range {a}..{b}");
        }
        c.copy_object(CopyObject::new("big", "copy")).await.unwrap();
        c.delete_object("big").await.unwrap();
        let (info, got) = c.get_object_bytes(GetObject::new("copy")).await.unwrap();
        assert!(got[..] == data[..]);
        assert_eq!(info.crc64, Some(crc64::checksum(&data)));
        // Part-Copy of a range across the copy's part boundaries.
        let id = c.create_multipart_upload("mid", &meta(&[])).await.unwrap();
        let range = (edge - 9, 2 * edge + 9);
        let p = c
            .upload_part_copy("mid", &id, 1, "copy", Some(range), None)
            .await
            .unwrap();
        let done = [CompletedPart {
            part_number: 1,
            etag: p.etag,
        }];
        c.complete_multipart_upload("mid", &id, &done)
            .await
            .unwrap();
        let (_, got) = c.get_object_bytes(GetObject::new("mid")).await.unwrap();
        assert!(got[..] == data[range.0 as usize..range.1 as usize]);
    });
    drop(emu);
    let emu = start();
    let c = emu.client();
    runtime().block_on(async {
        let (_, got) = c.get_object_bytes(GetObject::new("copy")).await.unwrap();
        assert!(got[..] == data[..], "kept across a restart");
        c.delete_object("copy").await.unwrap();
        c.delete_object("mid").await.unwrap();
    });
    let left = std::fs::read_dir(dir.path().join("data").join(BUCKET).join("data"))
        .unwrap()
        .count();
    assert_eq!(left, 0, "deleted objects leave no data");
}

#[test]
fn copy_keeps_or_replaces_metadata_and_delete_multiple() {
    let emu = TestEmulator::start();
    let c = emu.client();
    runtime().block_on(async {
        c.put_object(
            PutObject::new("src", Body::Bytes(Bytes::from_static(b"payload")))
                .metadata(meta(&[("mode", "33188")])),
        )
        .await
        .unwrap();
        c.copy_object(CopyObject::new("src", "kept")).await.unwrap();
        assert_eq!(
            c.head_object("kept")
                .await
                .unwrap()
                .user
                .get("mode")
                .unwrap(),
            "33188"
        );
        c.copy_object(CopyObject::new("src", "src").replace_metadata(meta(&[("mode", "33152")])))
            .await
            .unwrap();
        let info = c.head_object("src").await.unwrap();
        assert_eq!(info.user.get("mode").unwrap(), "33152");
        let (_, body) = c.get_object_bytes(GetObject::new("src")).await.unwrap();
        assert_eq!(&body[..], b"payload");
        let e = c
            .copy_object(CopyObject::new("src", "x").source_if_match("\"nope\""))
            .await
            .unwrap_err();
        assert!(e.is_precondition_failed());
        let e = c
            .copy_object(CopyObject::new("missing", "x"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("NoSuchCopySource"));

        let keys: Vec<String> = (0..1500).map(|i| format!("del/{i}")).collect();
        for chunk in keys.chunks(100) {
            futures::future::join_all(chunk.iter().map(|k| {
                c.put_object(PutObject::new(
                    k.clone(),
                    Body::Bytes(Bytes::from_static(b"1")),
                ))
            }))
            .await;
        }
        let failed = c.delete_objects(&keys).await.unwrap();
        assert!(failed.is_empty());
        let page = c.list_objects(ListObjects::new("del/")).await.unwrap();
        assert!(page.objects.is_empty());
    });
}

#[test]
fn sse_c_needs_the_same_key_everywhere() {
    let emu = TestEmulator::start();
    let key = SseCKey::from_bytes(&[42; 32]);
    let with_key = CosClient::new(cosmount::cos::ClientConfig {
        sse: Sse::Customer(key.into()),
        ..emu.client_config()
    })
    .unwrap();
    let other_key = CosClient::new(cosmount::cos::ClientConfig {
        sse: Sse::Customer(SseCKey::from_bytes(&[1; 32]).into()),
        ..emu.client_config()
    })
    .unwrap();
    let plain = emu.client();
    runtime().block_on(async {
        with_key
            .put_object(PutObject::new(
                "secret",
                Body::Bytes(Bytes::from_static(b"classified")),
            ))
            .await
            .unwrap();
        let info = with_key.head_object("secret").await.unwrap();
        assert!(info.sse_customer);
        let (_, b) = with_key
            .get_object_bytes(GetObject::new("secret"))
            .await
            .unwrap();
        assert_eq!(&b[..], b"classified");
        for client in [&*plain as &dyn ObjectClient, &other_key] {
            let e = client
                .get_object_bytes(GetObject::new("secret"))
                .await
                .unwrap_err();
            assert!(e.is_sse_key_error(), "{e}");
            assert_eq!(e.status(), Some(400));
            let e = client.head_object("secret").await.unwrap_err();
            assert_eq!(e.status(), Some(400));
        }
        // A copy (rename, chmod) of an SSE-C object needs the source key and stays encrypted.
        assert!(
            plain
                .copy_object(CopyObject::new("secret", "moved"))
                .await
                .is_err()
        );
        with_key
            .copy_object(CopyObject::new("secret", "moved"))
            .await
            .unwrap();
        assert!(with_key.head_object("moved").await.unwrap().sse_customer);
        assert!(plain.head_object("moved").await.is_err());

        // Multipart with SSE-C: every part carries the key.
        let id = with_key
            .create_multipart_upload("mp", &ObjectMetadata::default())
            .await
            .unwrap();
        let p = with_key
            .upload_part("mp", &id, 1, Body::Bytes(Bytes::from_static(b"abc")))
            .await
            .unwrap();
        let e = plain
            .upload_part("mp", &id, 2, Body::Bytes(Bytes::from_static(b"abc")))
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400));
        with_key
            .complete_multipart_upload(
                "mp",
                &id,
                &[CompletedPart {
                    part_number: 1,
                    etag: p.etag,
                }],
            )
            .await
            .unwrap();
        assert!(with_key.head_object("mp").await.unwrap().sse_customer);
    });
}

#[test]
fn sse_cos_and_kms_are_echoed() {
    let emu = TestEmulator::start();
    for (sse, expect) in [
        (Sse::Cos, "AES256"),
        (
            Sse::Kms {
                key_id: Some("48ba38aa-26c5-11ea-855c-52540085aaaa".into()),
                context: Some("eyJwcm9qZWN0IjoiY29zbW91bnQifQ==".into()),
            },
            "cos/kms",
        ),
    ] {
        let c = CosClient::new(cosmount::cos::ClientConfig {
            sse,
            ..emu.client_config()
        })
        .unwrap();
        runtime().block_on(async {
            c.put_object(PutObject::new("e", Body::Bytes(Bytes::from_static(b"x"))))
                .await
                .unwrap();
            assert_eq!(
                c.head_object("e").await.unwrap().sse.as_deref(),
                Some(expect)
            );
            c.copy_object(CopyObject::new("e", "e2")).await.unwrap();
            assert_eq!(
                c.head_object("e2").await.unwrap().sse.as_deref(),
                Some(expect),
                "SSE restated on the copy destination"
            );
        });
    }
}

#[test]
fn bad_credentials_are_refused_and_store_nothing() {
    let emu = TestEmulator::start();
    let wrong_key = CosClient::new(cosmount::cos::ClientConfig {
        credentials: cosmount::cos::auth::Credentials::new(emu.config.secret_id.clone(), "wrong"),
        ..emu.client_config()
    })
    .unwrap();
    let wrong_id = CosClient::new(cosmount::cos::ClientConfig {
        credentials: cosmount::cos::auth::Credentials::new("AKIDunknown", "wrong"),
        ..emu.client_config()
    })
    .unwrap();
    runtime().block_on(async {
        let e = wrong_key
            .put_object(PutObject::new("k", Body::Bytes(Bytes::from_static(b"x"))))
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(403));
        assert_eq!(e.code(), Some("SignatureDoesNotMatch"));
        assert!(
            !e.to_string().contains("wrong"),
            "no secret in the error: {e}"
        );
        assert_eq!(emu.emulator.object_count(BUCKET), 0);
        let e = wrong_id.head_bucket().await.unwrap_err();
        assert_eq!(e.status(), Some(403));
        let e = wrong_id
            .list_objects(ListObjects::new(""))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("InvalidAccessKeyId"));
    });
}

#[test]
fn temporary_credentials_need_their_token() {
    let emu = TestEmulator::start_with(|c| {
        c.session_token = Some(cosmount::cos::auth::Secret::new("tmp-token+/="))
    });
    let good = emu.client();
    let no_token = CosClient::new(cosmount::cos::ClientConfig {
        credentials: cosmount::cos::auth::Credentials::new(
            emu.config.secret_id.clone(),
            emu.config.secret_key.expose().to_string(),
        ),
        ..emu.client_config()
    })
    .unwrap();
    runtime().block_on(async {
        good.head_bucket().await.unwrap();
        good.put_object(PutObject::new("t", Body::Bytes(Bytes::from_static(b"x"))))
            .await
            .unwrap();
        assert_eq!(
            no_token.head_bucket().await.unwrap_err().status(),
            Some(403)
        );
    });
}

#[test]
fn idempotent_operations_survive_twenty_percent_503() {
    let emu = TestEmulator::start();
    let c = emu.client();
    // GET Service goes to the service host (an IP host means the default bucket).
    let service = CosClient::new(cosmount::cos::ClientConfig {
        endpoint: cosmount::cos::Endpoint::Url(
            emu.endpoint()
                .replace("127.0.0.1", "service.cos.localhost")
                .parse()
                .unwrap(),
        ),
        ..emu.client_config()
    })
    .unwrap();
    emu.emulator.faults().set("any:503:0.2").unwrap();
    runtime().block_on(async {
        for i in 0..40 {
            let k = format!("r/{i}");
            let data = pattern(2000 + i, i as u64);
            c.put_object(PutObject::new(
                k.clone(),
                Body::Bytes(Bytes::from(data.clone())),
            ))
            .await
            .unwrap();
            assert_eq!(c.head_object(&k).await.unwrap().size, data.len() as u64);
            let (_, b) = c.get_object_bytes(GetObject::new(k.clone())).await.unwrap();
            assert_eq!(&b[..], &data[..]);
            c.list_objects(ListObjects::new("r/")).await.unwrap();
            c.head_bucket().await.unwrap();
            assert_eq!(service.list_buckets().await.unwrap().len(), 1);
            c.copy_object(CopyObject::new(k.clone(), format!("{k}.copy")))
                .await
                .unwrap();
            let streamed = c.get_object(GetObject::new(k.clone())).await.unwrap();
            let chunks: Vec<Bytes> = streamed.body.try_collect().await.unwrap();
            assert_eq!(chunks.concat(), data);
            let failed = c
                .delete_objects(&[format!("{k}.gone1"), format!("{k}.gone2")])
                .await
                .unwrap();
            assert!(failed.is_empty());
            c.delete_object(&format!("{k}.copy")).await.unwrap();
        }
        let big = pattern(2 * MIB + 10, 99);
        let id = c
            .create_multipart_upload("mp", &ObjectMetadata::default())
            .await
            .unwrap();
        let p1 = c
            .upload_part(
                "mp",
                &id,
                1,
                Body::Bytes(Bytes::copy_from_slice(&big[..2 * MIB])),
            )
            .await
            .unwrap();
        let p2 = c
            .upload_part(
                "mp",
                &id,
                2,
                Body::Bytes(Bytes::copy_from_slice(&big[2 * MIB..])),
            )
            .await
            .unwrap();
        assert_eq!(c.list_parts("mp", &id, 0).await.unwrap().parts.len(), 2);
        assert_eq!(
            c.list_multipart_uploads("", "", "")
                .await
                .unwrap()
                .uploads
                .len(),
            1
        );
        let copied = c
            .upload_part_copy("mp", &id, 3, "r/0", None, None)
            .await
            .unwrap();
        assert!(!copied.etag.is_empty());
        let scratch = c
            .create_multipart_upload("scratch", &ObjectMetadata::default())
            .await
            .unwrap();
        c.abort_multipart_upload("scratch", &scratch).await.unwrap();
        c.complete_multipart_upload(
            "mp",
            &id,
            &[
                CompletedPart {
                    part_number: 1,
                    etag: p1.etag,
                },
                CompletedPart {
                    part_number: 2,
                    etag: p2.etag,
                },
            ],
        )
        .await
        .unwrap();
        let (_, b) = c.get_object_bytes(GetObject::new("mp")).await.unwrap();
        assert_eq!(&b[..], &big[..]);
    });
    assert!(
        emu.emulator.faults().injected() > 20,
        "faults were injected: {}",
        emu.emulator.faults().injected()
    );
}

#[test]
fn retry_budget_ends_in_a_typed_error() {
    let emu = TestEmulator::start();
    let c = CosClient::new(cosmount::cos::ClientConfig {
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
        ..emu.client_config()
    })
    .unwrap();
    emu.emulator.faults().set("head:503:always").unwrap();
    runtime().block_on(async {
        let e = c.head_object("x").await.unwrap_err();
        match &e {
            CosError::RetriesExhausted { attempts, last } => {
                assert_eq!(*attempts, 3);
                assert_eq!(last.status(), Some(503));
            }
            other => panic!("expected RetriesExhausted, got {other:?}"),
        }
        assert_eq!(emu.op_count("head"), 3);
    });
}

#[test]
fn errors_inside_200_cut_bodies_and_stalls_are_retried() {
    let emu = TestEmulator::start();
    let c = CosClient::new(cosmount::cos::ClientConfig {
        read_timeout: Duration::from_millis(500),
        ..emu.client_config()
    })
    .unwrap();
    runtime().block_on(async {
        let data = pattern(3 * MIB, 3);
        c.put_object(PutObject::new("o", Body::Bytes(Bytes::from(data.clone()))))
            .await
            .unwrap();
        emu.emulator.faults().set("copy:error200:x1").unwrap();
        c.copy_object(CopyObject::new("o", "o2")).await.unwrap();
        assert_eq!(emu.op_count("copy"), 2);

        emu.emulator.faults().set("get:reset:x1").unwrap();
        let (_, b) = c.get_object_bytes(GetObject::new("o")).await.unwrap();
        assert_eq!(&b[..], &data[..]);
        assert_eq!(emu.op_count("get"), 2);

        emu.emulator.faults().set("head:stall:x1").unwrap();
        assert_eq!(c.head_object("o").await.unwrap().size, data.len() as u64);

        emu.emulator.faults().set("complete:error200:x1").unwrap();
        let id = c
            .create_multipart_upload("m", &ObjectMetadata::default())
            .await
            .unwrap();
        let p = c
            .upload_part("m", &id, 1, Body::Bytes(Bytes::from_static(b"abc")))
            .await
            .unwrap();
        c.complete_multipart_upload(
            "m",
            &id,
            &[CompletedPart {
                part_number: 1,
                etag: p.etag,
            }],
        )
        .await
        .unwrap();
        assert_eq!(emu.op_count("complete"), 2);
    });
}

#[test]
fn file_bodies_stream_from_disk() {
    let emu = TestEmulator::start();
    let c = emu.client();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let data = pattern(3 * MIB + 17, 5);
    std::fs::write(&path, &data).unwrap();
    let file = std::sync::Arc::new(std::fs::File::open(&path).unwrap());
    runtime().block_on(async {
        c.put_object(PutObject::new(
            "from-file",
            Body::File {
                file,
                offset: 1000,
                len: 2 * MIB as u64,
            },
        ))
        .await
        .unwrap();
        let (_, b) = c
            .get_object_bytes(GetObject::new("from-file"))
            .await
            .unwrap();
        assert_eq!(&b[..], &data[1000..1000 + 2 * MIB]);
    });
}

/// Sends a signed raw HTTP/1.1 request (for input the client would never produce) and returns
/// the status line and body.
fn raw_request(
    emu: &TestEmulator,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, String)],
    body: &[u8],
    declared_len: Option<usize>,
) -> (u16, String) {
    let host = emu.emulator.addr().to_string();
    let mut signed: Vec<(String, String)> = vec![("host".into(), host.clone())];
    for (k, v) in headers {
        signed.push((k.to_string(), v.clone()));
    }
    let params = auth::decode_query(query);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sig = auth::sign(
        emu.config.secret_key.expose(),
        &SignRequest {
            method,
            path: &auth::decode_path(path).unwrap(),
            params: &params,
            headers: &signed,
        },
        KeyTime::around(now),
    );
    let mut req = format!(
        "{method} {path}{}{query} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {}\r\nConnection: close\r\n",
        if query.is_empty() { "" } else { "?" },
        sig.authorization(&emu.config.secret_id)
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "PUT" || method == "POST" {
        req.push_str(&format!(
            "Content-Length: {}\r\n",
            declared_len.unwrap_or(body.len())
        ));
    }
    req.push_str("\r\n");
    let mut s = TcpStream::connect(emu.emulator.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    if declared_len.is_some() {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn bad_input_gets_cos_errors_not_crashes() {
    let emu = TestEmulator::start();
    let c = emu.client();
    runtime().block_on(async {
        c.put_object(PutObject::new(
            "obj",
            Body::Bytes(Bytes::from_static(b"0123456789")),
        ))
        .await
        .unwrap();
    });
    let (st, body) = raw_request(
        &emu,
        "POST",
        "/obj",
        "uploadId=nope",
        &[],
        b"<not xml",
        None,
    );
    assert_eq!(st, 404, "{body}");
    assert!(body.contains("<Code>NoSuchUpload</Code>"));
    let id = runtime()
        .block_on(c.create_multipart_upload("obj2", &ObjectMetadata::default()))
        .unwrap();
    let (st, body) = raw_request(
        &emu,
        "POST",
        "/obj2",
        &format!("uploadId={id}"),
        &[],
        b"<Complete<<>",
        None,
    );
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("<Code>MalformedXML</Code>"), "{body}");
    let (st, body) = raw_request(
        &emu,
        "GET",
        "/obj",
        "",
        &[("Range", "bytes=zz".into())],
        b"",
        None,
    );
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("<Error>"));
    let (st, body) = raw_request(
        &emu,
        "GET",
        "/obj",
        "",
        &[("Range", "bytes=50-60".into())],
        b"",
        None,
    );
    assert_eq!(st, 416, "{body}");
    assert!(body.contains("<Code>InvalidRange</Code>"));
    let (st, body) = raw_request(&emu, "GET", "/obj", "acl", &[], b"", None);
    assert_eq!(st, 501, "{body}");
    assert!(body.contains("<Code>NotImplemented</Code>"));
    let (st, body) = raw_request(
        &emu,
        "GET",
        "/obj",
        "",
        &[("x-cos-meta-huge", "a".repeat(100_000))],
        b"",
        None,
    );
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("<Error>"));
    let (st, _) = raw_request(&emu, "PUT", "/truncated", "", &[], b"only-part", Some(1000));
    assert!(st == 400 || st == 0, "truncated body: {st}");
    let (st, body) = raw_request(&emu, "PATCH", "/obj", "", &[], b"", None);
    assert!(st == 405 || st == 501, "{st} {body}");
    // DELETE Bucket of a bucket that holds objects.
    let (st, body) = raw_request(&emu, "DELETE", "/", "", &[], b"", None);
    assert_eq!(st, 409, "{body}");
    assert!(body.contains("<Code>BucketNotEmpty</Code>"), "{body}");
    // Unsigned and garbage-signed requests.
    let mut s = TcpStream::connect(emu.emulator.addr()).unwrap();
    s.write_all(b"GET /obj HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: q-sign-algorithm=sha1&garbage\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(out.contains("<Code>AccessDenied</Code>"));
    // The emulator still serves normally afterwards, and nothing partial was stored.
    runtime().block_on(async {
        let (_, b) = c.get_object_bytes(GetObject::new("obj")).await.unwrap();
        assert_eq!(&b[..], b"0123456789");
        assert!(c.head_object("truncated").await.unwrap_err().is_not_found());
    });
}

/// A client for `bucket` in `region`, reaching the emulator with COS's own host names.
fn regional(emu: &TestEmulator, bucket: &str, region: &str) -> CosClient {
    CosClient::new(ClientConfig {
        bucket: bucket.into(),
        endpoint: Endpoint::RegionVia {
            region: region.into(),
            via: emu.endpoint().parse().unwrap(),
        },
        ..emu.client_config()
    })
    .unwrap()
}

fn names_and_regions(list: &[cosmount::cos::client::BucketSummary]) -> Vec<(&str, &str)> {
    list.iter()
        .map(|b| (b.name.as_str(), b.location.as_str()))
        .collect()
}

#[test]
fn put_and_delete_bucket_answer_as_cos_does() {
    let emu = TestEmulator::start();
    let fresh = regional(&emu, "fresh-1250000000", "ap-chengdu");
    runtime().block_on(async {
        assert_eq!(fresh.head_bucket().await.unwrap_err().status(), Some(404));
        fresh.put_bucket().await.unwrap();
        fresh.head_bucket().await.unwrap();
        let list = fresh.list_buckets().await.unwrap();
        assert_eq!(
            names_and_regions(&list),
            [(BUCKET, "ap-guangzhou"), ("fresh-1250000000", "ap-chengdu")]
        );
        assert!(list[1].created().is_some(), "{:?}", list[1]);
        // Made again: the bucket is already this account's.
        let again = fresh.put_bucket().await.unwrap_err();
        assert_eq!(
            (again.status(), again.code()),
            (Some(409), Some("BucketAlreadyOwnedByYou"))
        );
        // Not empty while it holds an object or an incomplete multipart upload.
        let body = Body::Bytes(Bytes::from_static(b"x"));
        fresh.put_object(PutObject::new("k", body)).await.unwrap();
        let e = fresh.delete_bucket().await.unwrap_err();
        assert_eq!((e.status(), e.code()), (Some(409), Some("BucketNotEmpty")));
        fresh.delete_object("k").await.unwrap();
        let id = fresh
            .create_multipart_upload("mp", &ObjectMetadata::default())
            .await
            .unwrap();
        assert_eq!(
            fresh.delete_bucket().await.unwrap_err().code(),
            Some("BucketNotEmpty")
        );
        fresh.abort_multipart_upload("mp", &id).await.unwrap();
        fresh.delete_bucket().await.unwrap();
        assert_eq!(fresh.head_bucket().await.unwrap_err().status(), Some(404));
        let gone = fresh.delete_bucket().await.unwrap_err();
        assert_eq!(
            (gone.status(), gone.code()),
            (Some(404), Some("NoSuchBucket"))
        );
        assert_eq!(fresh.list_buckets().await.unwrap().len(), 1);
        // Names COS refuses (the longest host is 60 characters).
        for (name, code) in [
            ("no-appid", "InvalidBucketName"),
            ("trailing--1250000000", "InvalidBucketName"),
            ("x234567890123456789012-1250000000", "BucketNameTooLong"),
        ] {
            let e = regional(&emu, name, "ap-chengdu")
                .put_bucket()
                .await
                .unwrap_err();
            assert_eq!((e.status(), e.code()), (Some(400), Some(code)), "{name}");
        }
        regional(&emu, "x23456789012345678901-1250000000", "ap-chengdu")
            .put_bucket()
            .await
            .unwrap();
    });
}

#[test]
fn a_bucket_answers_only_at_its_own_region() {
    let emu = TestEmulator::start_with(|c| {
        c.buckets = vec![BUCKET.into(), "far-1250000000@ap-beijing".into()];
    });
    runtime().block_on(async {
        let far = regional(&emu, "far-1250000000", "ap-beijing");
        far.head_bucket().await.unwrap();
        let body = Body::Bytes(Bytes::from_static(b"far"));
        far.put_object(PutObject::new("k", body)).await.unwrap();
        // At another region's endpoint COS answers NoSuchBucket.
        let lost = regional(&emu, "far-1250000000", "ap-guangzhou");
        assert_eq!(lost.head_bucket().await.unwrap_err().status(), Some(404));
        let e = lost
            .get_object_bytes(GetObject::new("k"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("NoSuchBucket"));
        // A host that names no region (`<bucket>.localhost`, the cosfs url form) reaches it.
        let port = emu.emulator.addr().port();
        let anywhere = CosClient::new(ClientConfig {
            bucket: "far-1250000000".into(),
            endpoint: Endpoint::Url(
                format!("http://far-1250000000.localhost:{port}")
                    .parse()
                    .unwrap(),
            ),
            ..emu.client_config()
        })
        .unwrap();
        anywhere.head_object("k").await.unwrap();
        assert_eq!(
            names_and_regions(&far.list_buckets().await.unwrap()),
            [(BUCKET, "ap-guangzhou"), ("far-1250000000", "ap-beijing")]
        );
    });
    assert_eq!(
        emu.emulator.buckets(),
        [
            (BUCKET.to_string(), "ap-guangzhou".to_string()),
            ("far-1250000000".to_string(), "ap-beijing".to_string())
        ]
    );
}

#[test]
fn buckets_made_by_put_bucket_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = cosmount::emulator::EmulatorConfig {
        data_dir: dir.path().join("data"),
        ..Default::default()
    };
    let start = || {
        let emu = cosmount::emulator::Emulator::start_background(config.clone()).unwrap();
        TestEmulator {
            emulator: emu,
            dir: tempfile::tempdir().unwrap(),
            config: config.clone(),
        }
    };
    let emu = start();
    runtime().block_on(async {
        let kept = regional(&emu, "kept-1250000000", "ap-nanjing");
        kept.put_bucket().await.unwrap();
        let body = Body::Bytes(Bytes::from_static(b"kept"));
        kept.put_object(PutObject::new("k", body)).await.unwrap();
        regional(&emu, "dropped-1250000000", "ap-nanjing")
            .put_bucket()
            .await
            .unwrap();
        regional(&emu, "dropped-1250000000", "ap-nanjing")
            .delete_bucket()
            .await
            .unwrap();
    });
    drop(emu);
    let emu = start();
    assert_eq!(
        emu.emulator.buckets(),
        [
            (BUCKET.to_string(), "ap-guangzhou".to_string()),
            ("kept-1250000000".to_string(), "ap-nanjing".to_string())
        ]
    );
    runtime().block_on(async {
        let (_, b) = regional(&emu, "kept-1250000000", "ap-nanjing")
            .get_object_bytes(GetObject::new("k"))
            .await
            .unwrap();
        assert_eq!(&b[..], b"kept");
    });
}

#[test]
fn put_bucket_is_retried_after_a_throttled_attempt() {
    let emu = TestEmulator::start();
    emu.emulator.faults().set("put_bucket:503:x1").unwrap();
    runtime().block_on(async {
        regional(&emu, "retried-1250000000", "ap-guangzhou")
            .put_bucket()
            .await
            .unwrap();
    });
    assert_eq!(emu.op_count("put_bucket"), 2);
    assert_eq!(emu.emulator.buckets().len(), 2);
}
