//! Runs the backend-neutral conformance suite against the redb backend, one test per check.

use std::sync::Arc;

use skiff_store::conformance;
use skiff_store::{RedbStore, Store};

async fn run(name: &str) {
    let (_, case) = conformance::CASES
        .iter()
        .find(|(case, _)| *case == name)
        .unwrap_or_else(|| panic!("no conformance case {name}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(RedbStore::open(dir.path().join("store.redb")).expect("open store"));
    case(store).await;
}

skiff_store::conformance_tests!(run);
