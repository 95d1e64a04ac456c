//! Unit tests of the daemonset controller.
