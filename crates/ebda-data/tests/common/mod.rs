//! Helpers shared by the data tests (also included by the binary's tests).
#![allow(dead_code, unused_imports)]

pub mod formats;

pub use ebda_testkit::{real_data, temp_dir};
