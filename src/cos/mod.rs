//! The COS client: request signing, the XML API, SSE headers, errors and retries. It knows
//! HTTP and XML and nothing of files.

pub mod auth;
pub mod client;
pub mod crc64;
pub mod dialect;
pub mod error;
pub mod retry;
pub mod sigv4;
pub mod sse;
pub mod xml;

pub use client::{
    Body, ClientConfig, CopyObject, CosClient, Endpoint, GetObject, ListObjects, ObjectClient,
    ObjectInfo, ObjectMetadata, PutObject,
};
pub use error::CosError;
