//! Helpers shared by the figure tests.
#![allow(dead_code)]

pub mod png;
pub mod records;
