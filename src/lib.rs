//! cosmount: mount a Tencent COS bucket with FUSE.
#![forbid(unsafe_code)]

pub mod cos;
