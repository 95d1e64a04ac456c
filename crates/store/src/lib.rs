//! The versioned key-value store every API object lives in (DESIGN.md §4).
