//! cosmount: mount a Tencent COS bucket with FUSE.
#![forbid(unsafe_code)]

pub mod block_sum;
pub mod config;
pub mod cos;
pub mod direct_io;
pub mod emulator;
pub mod file_stream;
pub mod fs;
pub mod fuse;
