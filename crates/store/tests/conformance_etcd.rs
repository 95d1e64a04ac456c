//! Runs the backend-neutral conformance suite against the etcd backend, one test per check, each
//! on its own fresh single-node etcd (Debian's `etcd-server`) started by the harness.

mod etcd_support;

use std::sync::Arc;

use skiff_store::conformance;
use skiff_store::{EtcdOptions, EtcdStore, Store};

use etcd_support::Etcd;

async fn run(name: &str) {
    let (_, case) = conformance::CASES
        .iter()
        .find(|(case, _)| *case == name)
        .unwrap_or_else(|| panic!("no conformance case {name}"));
    let etcd = tokio::task::spawn_blocking(Etcd::single)
        .await
        .expect("start etcd");
    let store: Arc<dyn Store> = Arc::new(
        EtcdStore::connect(EtcdOptions::new(etcd.endpoints()))
            .await
            .expect("connect to etcd"),
    );
    case(store).await;
    drop(etcd);
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                run(stringify!($name)).await;
            }
        )*

        #[test]
        fn every_conformance_case_has_a_test() {
            let here = [$(stringify!($name)),*];
            for (name, _) in conformance::CASES {
                assert!(here.contains(name), "conformance case {name} is not run");
            }
        }
    };
}

cases!(
    create_then_update_tracks_versions,
    create_existing_key_fails_already_exists,
    write_missing_key_fails_not_found,
    stale_mod_revision_conflicts,
    concurrent_cas_has_one_winner,
    delete_returns_value_at_delete_revision,
    range_lists_prefix_in_key_order,
    range_pages_are_one_snapshot_during_writes,
    range_at_old_revision_sees_old_state,
    range_at_future_revision_fails,
    compaction_fails_old_ranges_and_watches,
    watch_ordered,
    watch_unique,
    watch_atomic,
    watch_reliable,
    watch_resumable,
    watch_bookmarkable,
    watch_slow_consumer_loses_nothing_silently,
);
