//! The Kubernetes API model of Skiff: what resources exist, how objects are selected, patched,
//! defaulted, validated and printed. Pure functions over `serde_json::Value`; no IO, no clock.

pub mod registry;
