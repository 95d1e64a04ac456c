//! Unit tests of the statefulset controller.
