//! The `skiff` binary: one executable for every role (DESIGN.md §2).

fn main() {}
