//! The Kubernetes API model of Skiff: what resources exist, how objects are selected, patched,
//! defaulted, validated and printed. Pure functions over `serde_json::Value`; no IO, no clock.

pub mod defaults;
pub mod field_validation;
pub mod fields;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod selector;
pub mod table;
pub mod validation;
