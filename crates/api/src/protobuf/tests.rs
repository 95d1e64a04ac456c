//! Tests of the protobuf decoder.
use super::*;

#[test]
fn placeholder() {}
