//! The Kubernetes API server of Skiff (DESIGN.md §3).
