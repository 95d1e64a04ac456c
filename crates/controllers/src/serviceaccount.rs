//! The ServiceAccount controller: a `default` ServiceAccount in every active namespace,
//! recreated if deleted, as upstream's pkg/controller/serviceaccount.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;

use crate::control;
use crate::queue::Key;
use crate::writes::{Kind, Writes};

/// Name in logs, as upstream's component.
pub const NAME: &str = "serviceaccount-controller";

/// The accounts every namespace gets (upstream's `--service-account-names` default).
pub const DEFAULT_ACCOUNTS: &[&str] = &["default"];

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A write failed; the sync is retried with backoff.
    #[error(transparent)]
    Control(#[from] control::Error),
}

/// Everything a ServiceAccount sync needs.
pub struct ServiceAccountController<W> {
    /// Side effects.
    pub writes: Arc<W>,
    /// Namespace cache.
    pub namespaces: Store<Namespace>,
    /// ServiceAccount cache.
    pub accounts: Store<ServiceAccount>,
}

impl<W: Writes> ServiceAccountController<W> {
    /// Make sure namespace `key.name` has its default accounts.
    pub async fn reconcile(&self, key: &Key) -> Result<Option<Duration>, Error> {
        let Some(ns) = self.namespaces.get(&ObjectRef::new(&key.name)) else {
            return Ok(None);
        };
        let terminating = ns.metadata.deletion_timestamp.is_some()
            || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
        if terminating {
            return Ok(None);
        }
        for name in DEFAULT_ACCOUNTS {
            if self
                .accounts
                .get(&ObjectRef::new(name).within(&key.name))
                .is_some()
            {
                continue;
            }
            let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": key.name}});
            match self
                .writes
                .create(Kind::ServiceAccount, &key.name, sa)
                .await
            {
                Ok(_) => tracing::debug!(namespace = %key.name, account = name, "created"),
                // Already there (a stale cache), or the namespace began terminating: both fine.
                Err(e) if e.is_already_exists() || is_forbidden(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }
}

fn is_forbidden(e: &control::Error) -> bool {
    matches!(e, control::Error::Api(kube::Error::Api(s)) if s.code == 403)
}

/// The namespace a ServiceAccount event concerns, when it is a default account.
pub fn namespace_of_default(sa: &ServiceAccount) -> Option<Key> {
    let name = sa.metadata.name.as_deref()?;
    DEFAULT_ACCOUNTS
        .contains(&name)
        .then(|| Key::new("", sa.metadata.namespace.clone().unwrap_or_default()))
}

/// Wire the controller: its own Namespace and ServiceAccount informers, workers once synced.
pub(crate) fn register(
    client: &kube::Client,
    shutdown: &tokio_util::sync::CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) {
    use crate::informer::Informer;
    let mut namespaces: Informer<Namespace> = Informer::new(client.clone());
    let mut accounts: Informer<ServiceAccount> = Informer::new(client.clone());
    let queue = crate::queue::WorkQueue::new();
    let c = Arc::new(ServiceAccountController {
        writes: Arc::new(crate::writes::ClientWrites::new(client.clone(), NAME)),
        namespaces: namespaces.store(),
        accounts: accounts.store(),
    });
    let q = queue.clone();
    namespaces.on_change(Arc::new(move |_old, new| {
        if let Some(n) = new {
            q.add(Key::of(&n.metadata));
        }
    }));
    let q = queue.clone();
    accounts.on_change(Arc::new(move |old, new| {
        // Only a deletion can leave a namespace without its account.
        if new.is_none()
            && let Some(k) = old.and_then(namespace_of_default)
        {
            q.add(k);
        }
    }));
    let (ns, sa) = (namespaces.synced(), accounts.synced());
    let ready = async move { ns.wait().await && sa.wait().await };
    let resync = namespaces.store();
    tasks.spawn(namespaces.run(shutdown.clone()));
    tasks.spawn(accounts.run(shutdown.clone()));
    crate::writes::start_after(
        tasks,
        NAME,
        queue,
        shutdown.clone(),
        ready,
        resync,
        move |key| {
            let c = c.clone();
            async move { c.reconcile(&key).await }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writes::{RecordingWrites, store_of};
    use k8s_openapi::api::core::v1::NamespaceStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ns(name: &str, phase: &str) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(NamespaceStatus {
                phase: Some(phase.into()),
                conditions: None,
            }),
        }
    }

    fn sa(ns: &str) -> ServiceAccount {
        ServiceAccount {
            metadata: ObjectMeta {
                name: Some("default".into()),
                namespace: Some(ns.into()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        }
    }

    fn controller(
        nss: Vec<Namespace>,
        sas: Vec<ServiceAccount>,
    ) -> ServiceAccountController<RecordingWrites> {
        ServiceAccountController {
            writes: Arc::new(RecordingWrites::new()),
            namespaces: store_of(nss),
            accounts: store_of(sas),
        }
    }

    #[tokio::test]
    async fn a_namespace_without_a_default_account_gets_one() {
        let c = controller(vec![ns("team", "Active")], vec![]);
        c.reconcile(&Key::new("", "team")).await.expect("sync");
        let w = c.writes.objects();
        assert_eq!(w.len(), 1);
        assert_eq!(
            (w[0].verb, w[0].kind),
            ("create", Some(Kind::ServiceAccount))
        );
        assert_eq!(w[0].body["metadata"]["name"], "default");
        assert_eq!(w[0].namespace, "team");
    }

    #[tokio::test]
    async fn existing_accounts_and_terminating_namespaces_are_left_alone() {
        let c = controller(
            vec![ns("team", "Active"), ns("gone", "Terminating")],
            vec![sa("team")],
        );
        c.reconcile(&Key::new("", "team")).await.expect("sync");
        c.reconcile(&Key::new("", "gone")).await.expect("sync");
        assert!(c.writes.objects().is_empty());
    }
}
