//! One runtime relist for every pod per period, as upstream's PLEG: ListPodSandbox and
//! ListContainers once, ContainerStatus only for containers whose state changed and
//! PodSandboxStatus only for sandboxes not seen before. Pod workers read their pod's record
//! instead of asking the runtime themselves, and are woken when their record changed.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cri::{Cri, api};

use super::{
    LABEL_POD_UID, SyncError, attempt_of, container_name, cri, runtime_container_status,
    sort_newest_first,
};

/// How often the runtime is relisted (upstream's PLEG relist period).
pub const PERIOD: Duration = Duration::from_secs(1);
/// A snapshot older than this is not used (relists failing, e.g. while containerd restarts):
/// the workers ask the runtime themselves until relisting works again.
const MAX_AGE: Duration = Duration::from_secs(5);

/// What the runtime has for one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodRecord {
    /// The pod's newest ready sandbox.
    pub sandbox_id: String,
    pub attempt: u32,
    pub ip: String,
    /// Container name -> the sandbox's containers of that name, newest attempt first.
    pub containers: HashMap<String, Vec<api::ContainerStatus>>,
}

#[derive(Default)]
struct Inner {
    /// When the newest completed relist began: it saw every change finished before then.
    taken: Option<Instant>,
    records: HashMap<String, PodRecord>,
    /// Container ID -> its last status, reused while the list shows the same state.
    statuses: HashMap<String, api::ContainerStatus>,
    /// Sandbox ID -> its IP (fixed for the sandbox's life).
    ips: HashMap<String, String>,
}

/// The shared runtime snapshot.
#[derive(Default)]
pub struct Relist {
    inner: Mutex<Inner>,
}

/// The fields that make a pod's record differ for its worker.
fn fingerprint(r: &PodRecord) -> Vec<(String, i32, u32)> {
    let mut f: Vec<(String, i32, u32)> = r
        .containers
        .values()
        .flatten()
        .map(|s| (s.id.clone(), s.state, attempt_of(s)))
        .collect();
    f.push((r.sandbox_id.clone(), -1, r.attempt));
    f.sort();
    f
}

impl Relist {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pod's record, if a relist that began after `after` saw a ready sandbox for it.
    /// A worker passes the end of its own last runtime change, so it never acts on a snapshot
    /// that predates it (and, say, starts a container a second time).
    pub fn record(&self, uid: &str, after: Option<Instant>) -> Option<PodRecord> {
        let inner = self.lock();
        let taken = inner.taken?;
        if after.is_some_and(|a| taken <= a) || taken.elapsed() > MAX_AGE {
            return None;
        }
        inner.records.get(uid).cloned()
    }

    /// Relist the runtime; returns the UIDs of the pods whose record appeared, changed or went.
    pub async fn relist(&self, runtime: &Cri) -> Result<HashSet<String>, SyncError> {
        let taken = Instant::now();
        let mut rt = runtime.rt.clone();
        let sandboxes = rt
            .list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
            .await
            .map_err(cri("ListPodSandbox"))?
            .into_inner()
            .items;
        let containers = rt
            .list_containers(api::ListContainersRequest { filter: None })
            .await
            .map_err(cri("ListContainers"))?
            .into_inner()
            .containers;
        // Only relist touches these caches (one relist at a time): taken, not copied. A
        // failed relist drops them and the next one asks again.
        let (mut statuses, mut ips) = {
            let mut inner = self.lock();
            (
                std::mem::take(&mut inner.statuses),
                std::mem::take(&mut inner.ips),
            )
        };
        // The newest ready sandbox of each pod.
        let mut ready: HashMap<String, &api::PodSandbox> = HashMap::new();
        for s in &sandboxes {
            let Some(uid) = s.labels.get(LABEL_POD_UID) else {
                continue;
            };
            if s.state() != api::PodSandboxState::SandboxReady {
                continue;
            }
            let newer = ready.get(uid).is_none_or(|r| r.created_at < s.created_at);
            if newer {
                ready.insert(uid.clone(), s);
            }
        }
        let mut records: HashMap<String, PodRecord> = HashMap::new();
        for (uid, s) in &ready {
            let ip = match ips.get(&s.id) {
                Some(ip) => ip.clone(),
                None => {
                    let status = rt
                        .pod_sandbox_status(api::PodSandboxStatusRequest {
                            pod_sandbox_id: s.id.clone(),
                            verbose: false,
                        })
                        .await;
                    match status {
                        Ok(r) => {
                            let ip = r
                                .into_inner()
                                .status
                                .and_then(|s| s.network)
                                .map(|n| n.ip)
                                .unwrap_or_default();
                            ips.insert(s.id.clone(), ip.clone());
                            ip
                        }
                        // Removed since the list: the pod has no record this round.
                        Err(e) if e.code() == tonic::Code::NotFound => continue,
                        Err(e) => return Err(cri("PodSandboxStatus")(e)),
                    }
                }
            };
            records.insert(
                uid.clone(),
                PodRecord {
                    sandbox_id: s.id.clone(),
                    attempt: s.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
                    ip,
                    containers: HashMap::new(),
                },
            );
        }
        let sandbox_owner: HashMap<&str, &str> = ready
            .iter()
            .map(|(uid, s)| (s.id.as_str(), uid.as_str()))
            .collect();
        let mut seen = HashSet::new();
        for c in &containers {
            let Some(uid) = sandbox_owner.get(c.pod_sandbox_id.as_str()) else {
                continue;
            };
            seen.insert(c.id.clone());
            let status = match statuses.get(&c.id).filter(|s| s.state == c.state) {
                Some(s) => s.clone(),
                None => match runtime_container_status(&mut rt, &c.id).await? {
                    Some(s) => {
                        statuses.insert(c.id.clone(), s.clone());
                        s
                    }
                    None => continue,
                },
            };
            if let Some(r) = records.get_mut(*uid) {
                r.containers
                    .entry(container_name(c))
                    .or_default()
                    .push(status);
            }
        }
        for r in records.values_mut() {
            sort_newest_first(&mut r.containers);
        }
        statuses.retain(|id, _| seen.contains(id));
        ips.retain(|id, _| sandbox_owner.contains_key(id.as_str()));
        let mut inner = self.lock();
        let mut changed: HashSet<String> = records
            .iter()
            .filter(|(uid, r)| {
                inner
                    .records
                    .get(*uid)
                    .is_none_or(|old| fingerprint(old) != fingerprint(r))
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        changed.extend(
            inner
                .records
                .keys()
                .filter(|uid| !records.contains_key(*uid))
                .cloned(),
        );
        *inner = Inner {
            taken: Some(taken),
            records,
            statuses,
            ips,
        };
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    use super::super::{PodState, sync};
    use super::*;
    use crate::events::Recorder;
    use crate::testing::Harness;

    const IMAGE: &str = "docker.io/library/busybox:1.36";

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "uid": "uid-1"},
            "spec": {"containers": [{"name": "app", "image": IMAGE}]},
        }))
        .expect("pod")
    }

    async fn setup() -> (Harness, Pod, PodState, Arc<Relist>) {
        let h = Harness::new().await;
        h.cri.state().images.insert(IMAGE.into());
        let p = pod();
        let relist = Arc::new(Relist::default());
        let st = PodState {
            events: Some(Recorder::new(h.agent.client.clone(), "node-1".into())),
            last_pod: Some(Arc::new(p.clone())),
            relist: Some(relist.clone()),
            ..PodState::default()
        };
        (h, p, st, relist)
    }

    #[test]
    fn a_snapshot_older_than_a_few_periods_is_not_used() {
        let r = Relist::default();
        let record = PodRecord {
            sandbox_id: "s".into(),
            attempt: 0,
            ip: String::new(),
            containers: HashMap::new(),
        };
        r.lock().records.insert("u".into(), record);
        r.lock().taken = Instant::now().checked_sub(MAX_AGE + Duration::from_secs(1));
        assert!(r.record("u", None).is_none());
        r.lock().taken = Some(Instant::now());
        assert!(r.record("u", None).is_some());
    }

    #[tokio::test]
    async fn relist_reports_only_pods_whose_runtime_state_changed() {
        let (h, p, mut st, relist) = setup().await;
        assert!(
            relist
                .relist(&h.agent.cri)
                .await
                .expect("relist")
                .is_empty()
        );
        sync(&h.agent, &p, &mut st).await.expect("sync");
        let changed = relist.relist(&h.agent.cri).await.expect("relist");
        assert_eq!(changed, HashSet::from(["uid-1".to_string()]));
        let record = relist.record("uid-1", None).expect("record");
        assert_eq!(record.ip, "10.244.0.7");
        assert_eq!(record.containers["app"].len(), 1);
        assert!(
            relist
                .relist(&h.agent.cri)
                .await
                .expect("relist")
                .is_empty()
        );
        h.cri.exit("app", 1, "");
        let changed = relist.relist(&h.agent.cri).await.expect("relist");
        assert_eq!(changed, HashSet::from(["uid-1".to_string()]));
        let record = relist.record("uid-1", None).expect("record");
        assert_eq!(record.containers["app"][0].exit_code, 1);
    }

    #[tokio::test]
    async fn steady_sync_from_the_snapshot_changes_nothing() {
        let (h, p, mut st, relist) = setup().await;
        sync(&h.agent, &p, &mut st).await.expect("sync");
        let written = st.last_written.clone();
        relist.relist(&h.agent.cri).await.expect("relist");
        assert!(relist.record("uid-1", st.mutated_at).is_some());
        h.cri.clear_calls();
        let patches = h.status_patches().len();
        sync(&h.agent, &p, &mut st).await.expect("sync");
        assert!(h.cri.calls().is_empty(), "{:?}", h.cri.calls());
        assert_eq!(st.last_written, written);
        assert_eq!(h.status_patches().len(), patches);
    }

    #[tokio::test]
    async fn a_snapshot_older_than_the_workers_last_change_is_not_used() {
        let (h, p, mut st, relist) = setup().await;
        sync(&h.agent, &p, &mut st).await.expect("sync");
        h.cri.exit("app", 1, "");
        h.cri.advance(Duration::from_secs(301));
        relist.relist(&h.agent.cri).await.expect("relist");
        // This sync restarts the container (attempt 1) from the snapshot ...
        sync(&h.agent, &p, &mut st).await.expect("sync");
        assert_eq!(h.cri.latest("app").map(|c| c.attempt), Some(1));
        // ... which now predates that restart: the next sync must not trust it and start the
        // container again.
        assert!(relist.record("uid-1", st.mutated_at).is_none());
        h.cri.clear_calls();
        sync(&h.agent, &p, &mut st).await.expect("sync");
        assert!(
            !h.cri
                .calls()
                .iter()
                .any(|c| c.starts_with("CreateContainer")),
            "{:?}",
            h.cri.calls()
        );
        assert_eq!(h.cri.latest("app").map(|c| c.attempt), Some(1));
    }
}
