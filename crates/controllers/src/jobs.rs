//! Wiring of the batch controllers (Job, CronJob, TTL-after-finished): their informers, event
//! handlers, queues and workers.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::core::SelectorExt;
use kube::runtime::reflector::ObjectRef;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::informer::Informer;
use crate::job_control::JobClientControl;
use crate::queue::{Key, WorkQueue};
use crate::{cronjob, job, owner, spawn_resync, spawn_workers, system_clock, ttl};

/// Register the batch controllers on the shared pod informer (before it runs), start their own
/// Job and CronJob informers, and start their workers once every cache they read has synced.
pub fn register(
    client: &kube::Client,
    pods: &mut Informer<Pod>,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) {
    let mut jobs: Informer<Job> = Informer::new(client.clone());
    let mut cronjobs: Informer<CronJob> = Informer::new(client.clone());
    let control = Arc::new(JobClientControl::new(client.clone(), job::NAME));
    let jc = Arc::new(job::JobController::new(
        control,
        pods.store(),
        jobs.store(),
        system_clock(),
    ));
    let cjc = Arc::new(cronjob::CronJobController {
        control: Arc::new(JobClientControl::new(client.clone(), cronjob::NAME)),
        jobs: jobs.store(),
        cronjobs: cronjobs.store(),
        clock: system_clock(),
    });
    let ttlc = Arc::new(ttl::TtlController {
        control: Arc::new(JobClientControl::new(client.clone(), ttl::NAME)),
        jobs: jobs.store(),
        clock: system_clock(),
    });
    let job_q = WorkQueue::new();
    let orphan_q = WorkQueue::new();
    let cron_q = WorkQueue::new();
    let ttl_q = WorkQueue::new();

    // Pods: expectations, owning Job, adoption candidates, orphans holding our finalizer.
    {
        let q = job_q.clone();
        let oq = orphan_q.clone();
        let c = jc.clone();
        let job_store = jobs.store();
        pods.on_change(Arc::new(move |old, new| {
            if let Some(k) = new.and_then(job::owning_job)
                && old.is_none()
            {
                c.expectations.creation_observed(&k);
            }
            if let Some(p) = new.or(old) {
                let gone = new.is_none() || p.metadata.deletion_timestamp.is_some();
                if let Some(k) = job::owning_job(p) {
                    if gone {
                        c.expectations
                            .deletion_observed(&k, p.metadata.name.as_deref().unwrap_or(""));
                    }
                    if (new.is_none() || !job::has_tracking_finalizer(p))
                        && let Some(uid) = p.metadata.uid.as_deref()
                    {
                        c.finalizer_removal_observed(&k, uid);
                    }
                }
            }
            for p in [old, new].into_iter().flatten() {
                if let Some(k) = job::owning_job(p) {
                    q.add(k);
                }
            }
            let Some(p) = new else { return };
            let owner_job = job::owning_job(p)
                .and_then(|k| job_store.get(&ObjectRef::new(&k.name).within(&k.namespace)));
            let owner_uid = owner::controller_of(&p.metadata).map(|c| c.uid.clone());
            if job::has_tracking_finalizer(p)
                && owner_job.as_ref().and_then(|j| j.metadata.uid.clone()) != owner_uid
            {
                oq.add(Key::of(&p.metadata));
            }
            if owner::controller_of(&p.metadata).is_none() {
                let labels = p.metadata.labels.clone().unwrap_or_default();
                for j in job_store.state() {
                    if j.metadata.namespace == p.metadata.namespace
                        && job::selector_of(&j)
                            .is_ok_and(|s| !s.selects_all() && s.matches(&labels))
                    {
                        q.add(Key::of(&j.metadata));
                    }
                }
            }
        }));
    }
    // Jobs: the Job itself, its CronJob, its TTL; a deleted Job's pods lose our finalizer.
    {
        let q = job_q.clone();
        let oq = orphan_q.clone();
        let cq = cron_q.clone();
        let tq = ttl_q.clone();
        let pod_store = pods.store();
        jobs.on_change(Arc::new(move |old, new| {
            for j in [old, new].into_iter().flatten() {
                if let Some(k) = cronjob::owning_cronjob(j) {
                    cq.add(k);
                }
            }
            match new {
                Some(j) => {
                    q.add(Key::of(&j.metadata));
                    if ttl::needs_cleanup(j) {
                        tq.add(Key::of(&j.metadata));
                    }
                }
                None => {
                    if let Some(j) = old {
                        q.add(Key::of(&j.metadata));
                        for p in pod_store.state() {
                            if job::has_tracking_finalizer(&p)
                                && owner::controller_of(&p.metadata).map(|c| &c.uid)
                                    == j.metadata.uid.as_ref()
                            {
                                oq.add(Key::of(&p.metadata));
                            }
                        }
                    }
                }
            }
        }));
    }
    {
        let cq = cron_q.clone();
        cronjobs.on_change(Arc::new(move |_old, new| {
            if let Some(cj) = new {
                cq.add(Key::of(&cj.metadata));
            }
        }));
    }

    let job_store = jobs.store();
    let cron_store = cronjobs.store();
    let pod_store = pods.store();
    // Not `Store::wait_until_ready`: the pod cache is shared, and kube wakes one waiter only.
    let synced = [jobs.synced(), cronjobs.synced(), pods.synced()];
    tasks.spawn(jobs.run(shutdown.clone()));
    tasks.spawn(cronjobs.run(shutdown.clone()));
    let tasks2 = tasks.clone();
    tasks.spawn(async move {
        let ready = async {
            for s in synced {
                if !s.wait().await {
                    return false;
                }
            }
            true
        };
        tokio::select! {
            ok = ready => {
                if !ok {
                    tracing::error!("a batch informer stopped before it synced");
                    return;
                }
            }
            _ = shutdown.cancelled() => return,
        }
        tracing::info!("batch controller caches synced; starting job, cronjob and ttl controllers");
        spawn_resync(&tasks2, job_store.clone(), job_q.clone(), shutdown.clone());
        spawn_resync(&tasks2, cron_store, cron_q.clone(), shutdown.clone());
        spawn_resync(&tasks2, job_store.clone(), ttl_q.clone(), shutdown.clone());
        let c = jc.clone();
        spawn_workers(&tasks2, job::NAME, job_q, shutdown.clone(), move |key| {
            let c = c.clone();
            async move { c.reconcile(&key).await }
        });
        let c = jc.clone();
        let pods_for_orphans = pod_store.clone();
        spawn_workers(
            &tasks2,
            job::NAME,
            orphan_q,
            shutdown.clone(),
            move |key: Key| {
                let c = c.clone();
                let pods = pods_for_orphans.clone();
                async move {
                    match pods.get(&ObjectRef::new(&key.name).within(&key.namespace)) {
                        Some(p) => c.release_orphan(&p).await.map(|()| None),
                        None => Ok(None),
                    }
                }
            },
        );
        spawn_workers(
            &tasks2,
            cronjob::NAME,
            cron_q,
            shutdown.clone(),
            move |key| {
                let c = cjc.clone();
                async move { c.reconcile(&key).await }
            },
        );
        spawn_workers(&tasks2, ttl::NAME, ttl_q, shutdown, move |key| {
            let c = ttlc.clone();
            async move { c.reconcile(&key).await }
        });
    });
}
