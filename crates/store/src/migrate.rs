//! Copying a whole store into another: how `skiff server --datastore-endpoint` moves an
//! embedded data dir's state into a new, empty etcd (k3s users outgrowing SQLite ask for this).

use crate::{Error, RangeOptions, Result, Store};

/// Keys are copied in pages of this many, all read at one revision of the source.
const PAGE: usize = 500;

/// Copy every key of `from` (latest values, read at one revision) into `to`, which must hold
/// no keys at all. Returns how many keys were copied. Revisions are not carried over: the
/// target assigns its own, so clients must relist, as after any datastore change.
pub async fn copy_all(from: &dyn Store, to: &dyn Store) -> Result<u64> {
    let existing = to
        .range(
            "/",
            RangeOptions {
                limit: Some(1),
                ..RangeOptions::default()
            },
        )
        .await?;
    if let Some(kv) = existing.kvs.first() {
        return Err(Error::AlreadyExists {
            key: kv.key.clone(),
        });
    }
    let mut copied = 0;
    let mut options = RangeOptions {
        limit: Some(PAGE),
        ..RangeOptions::default()
    };
    loop {
        let page = from.range("/", options.clone()).await?;
        for kv in &page.kvs {
            to.create(&kv.key, kv.value.clone()).await?;
            copied += 1;
        }
        match (page.more, page.kvs.last()) {
            (true, Some(last)) => {
                options.start_after = Some(last.key.clone());
                options.revision = Some(page.revision);
            }
            _ => return Ok(copied),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedbStore;

    #[tokio::test]
    async fn every_key_arrives_and_a_non_empty_target_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let from = RedbStore::open(dir.path().join("a.redb")).expect("open");
        let to = RedbStore::open(dir.path().join("b.redb")).expect("open");
        for i in 0..1234 {
            from.create(
                &format!("/registry/configmaps/default/c{i:04}"),
                format!("v{i}").into(),
            )
            .await
            .expect("create");
        }
        from.delete("/registry/configmaps/default/c0007", None)
            .await
            .expect("delete");
        assert_eq!(copy_all(&from, &to).await.expect("copy"), 1233);
        let got = to
            .get("/registry/configmaps/default/c1233")
            .await
            .expect("get");
        assert_eq!(got.map(|kv| kv.value), Some("v1233".into()));
        assert!(
            to.get("/registry/configmaps/default/c0007")
                .await
                .expect("get")
                .is_none()
        );
        let again = copy_all(&from, &to).await;
        assert!(
            matches!(again, Err(Error::AlreadyExists { .. })),
            "{again:?}"
        );
    }
}
