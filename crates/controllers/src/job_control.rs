//! The side effects of the Job, CronJob and TTL-after-finished controllers beyond pods and
//! events (`JobControl`), with the kube-client implementation and a recording fake.

use std::sync::Mutex;

use async_trait::async_trait;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy};
use serde_json::json;

use crate::control::{ClientControl, EventRecorder, PodControl, Recorder, Result};

/// Writing Jobs and CronJobs, and the pod finalizer the Job controller tracks pods with.
#[async_trait]
pub trait JobControl: Send + Sync {
    /// Replace a Job's status (optimistic: carries its resourceVersion).
    async fn update_job_status(&self, job: &Job) -> Result<Job>;
    /// Remove `finalizer` from a pod, only if it still has `uid`.
    async fn remove_pod_finalizer(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        finalizer: &str,
        remaining: &[String],
    ) -> Result<()>;
    /// Create a Job.
    async fn create_job(&self, job: &Job) -> Result<Job>;
    /// Delete a Job with background propagation, only if it still has `uid`.
    async fn delete_job(&self, namespace: &str, name: &str, uid: &str) -> Result<()>;
    /// Replace a CronJob's status.
    async fn update_cron_job_status(&self, cj: &CronJob) -> Result<CronJob>;
    /// Whether a Job exists (a live read: a cache miss must not drop an active Job).
    async fn job_exists(&self, namespace: &str, name: &str) -> Result<bool>;
}

/// The real side effects: pods and events through `ClientControl`, Job writes through `client`.
#[derive(Clone)]
pub struct JobClientControl {
    inner: ClientControl,
    client: kube::Client,
}

impl JobClientControl {
    /// Side effects through `client`; events say they come from `component`.
    pub fn new(client: kube::Client, component: &'static str) -> JobClientControl {
        JobClientControl {
            inner: ClientControl::new(client.clone(), component),
            client,
        }
    }
}

#[async_trait]
impl PodControl for JobClientControl {
    async fn create_pod(&self, namespace: &str, pod: &Pod) -> Result<Pod> {
        self.inner.create_pod(namespace, pod).await
    }

    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<()> {
        self.inner.delete_pod(namespace, name, uid).await
    }

    async fn set_pod_owners(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        owners: &[OwnerReference],
    ) -> Result<()> {
        self.inner
            .set_pod_owners(namespace, name, uid, owners)
            .await
    }
}

impl EventRecorder for JobClientControl {
    fn record(&self, about: &ObjectReference, type_: &str, reason: &str, message: String) {
        self.inner.record(about, type_, reason, message);
    }
}

fn ns_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.namespace.clone().unwrap_or_else(|| "default".into())
}

#[async_trait]
impl JobControl for JobClientControl {
    async fn update_job_status(&self, job: &Job) -> Result<Job> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), &ns_of(&job.metadata));
        let name = job.metadata.name.as_deref().unwrap_or_default();
        Ok(api
            .replace_status(name, &PostParams::default(), job)
            .await?)
    }

    async fn remove_pod_finalizer(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        _finalizer: &str,
        remaining: &[String],
    ) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        // The uid makes the server refuse the patch if the pod was replaced meanwhile.
        // An empty list is dropped (null), as upstream's strategic-merge delete leaves none.
        let finalizers = if remaining.is_empty() {
            serde_json::Value::Null
        } else {
            json!(remaining)
        };
        let patch = json!({"metadata": {"uid": uid, "finalizers": finalizers}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }

    async fn create_job(&self, job: &Job) -> Result<Job> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), &ns_of(&job.metadata));
        Ok(api.create(&PostParams::default(), job).await?)
    }

    async fn delete_job(&self, namespace: &str, name: &str, uid: &str) -> Result<()> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), namespace);
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        api.delete(name, &dp).await?;
        Ok(())
    }

    async fn update_cron_job_status(&self, cj: &CronJob) -> Result<CronJob> {
        let api: Api<CronJob> = Api::namespaced(self.client.clone(), &ns_of(&cj.metadata));
        let name = cj.metadata.name.as_deref().unwrap_or_default();
        Ok(api.replace_status(name, &PostParams::default(), cj).await?)
    }

    async fn job_exists(&self, namespace: &str, name: &str) -> Result<bool> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), namespace);
        Ok(api.get_opt(name).await?.is_some())
    }
}

/// One Job/CronJob side effect, as the fake records it.
#[derive(Clone, Debug, PartialEq)]
pub enum JobAction {
    /// A Job's status replaced.
    UpdateJobStatus { name: String },
    /// The tracking finalizer removed from a pod.
    RemoveFinalizer { pod: String },
    /// A Job created.
    CreateJob { name: String },
    /// A Job deleted.
    DeleteJob { name: String },
    /// A CronJob's status replaced.
    UpdateCronJobStatus { name: String },
}

/// A recording fake: pods and events go to the shared `Recorder`, Job writes are kept here.
#[derive(Default)]
pub struct JobRecorder {
    /// Pods and events.
    pub pods: Recorder,
    actions: Mutex<Vec<JobAction>>,
    job_statuses: Mutex<Vec<Job>>,
    jobs: Mutex<Vec<Job>>,
    cron_statuses: Mutex<Vec<CronJob>>,
    existing: Mutex<std::collections::HashSet<String>>,
}

impl JobRecorder {
    /// A fresh fake.
    pub fn new() -> JobRecorder {
        JobRecorder::default()
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Job writes so far.
    pub fn actions(&self) -> Vec<JobAction> {
        Self::lock(&self.actions).clone()
    }

    /// Job status objects written so far, in order.
    pub fn job_statuses(&self) -> Vec<Job> {
        Self::lock(&self.job_statuses).clone()
    }

    /// The last Job written through the status subresource.
    pub fn last_job(&self) -> Option<Job> {
        Self::lock(&self.job_statuses).last().cloned()
    }

    /// Jobs created so far.
    pub fn created_jobs(&self) -> Vec<Job> {
        Self::lock(&self.jobs).clone()
    }

    /// CronJob status objects written so far.
    pub fn cron_statuses(&self) -> Vec<CronJob> {
        Self::lock(&self.cron_statuses).clone()
    }

    /// Make `job_exists` answer true for `name` (a Job the cache has not seen).
    pub fn add_existing_job(&self, name: &str) {
        Self::lock(&self.existing).insert(name.to_string());
    }

    /// Events as `reason: message`.
    pub fn events(&self) -> Vec<String> {
        self.pods.events()
    }

    fn push(&self, a: JobAction) {
        Self::lock(&self.actions).push(a);
    }
}

#[async_trait]
impl PodControl for JobRecorder {
    async fn create_pod(&self, namespace: &str, pod: &Pod) -> Result<Pod> {
        self.pods.create_pod(namespace, pod).await
    }

    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<()> {
        self.pods.delete_pod(namespace, name, uid).await
    }

    async fn set_pod_owners(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        owners: &[OwnerReference],
    ) -> Result<()> {
        self.pods.set_pod_owners(namespace, name, uid, owners).await
    }
}

impl EventRecorder for JobRecorder {
    fn record(&self, about: &ObjectReference, type_: &str, reason: &str, message: String) {
        self.pods.record(about, type_, reason, message);
    }
}

#[async_trait]
impl JobControl for JobRecorder {
    async fn update_job_status(&self, job: &Job) -> Result<Job> {
        self.push(JobAction::UpdateJobStatus {
            name: job.metadata.name.clone().unwrap_or_default(),
        });
        let mut stored = job.clone();
        let rv = Self::lock(&self.job_statuses).len();
        stored.metadata.resource_version = Some(format!("fake-{rv}"));
        Self::lock(&self.job_statuses).push(stored.clone());
        Ok(stored)
    }

    async fn remove_pod_finalizer(
        &self,
        _namespace: &str,
        name: &str,
        _uid: &str,
        _finalizer: &str,
        _remaining: &[String],
    ) -> Result<()> {
        self.push(JobAction::RemoveFinalizer {
            pod: name.to_string(),
        });
        Ok(())
    }

    async fn create_job(&self, job: &Job) -> Result<Job> {
        self.push(JobAction::CreateJob {
            name: job.metadata.name.clone().unwrap_or_default(),
        });
        let mut created = job.clone();
        created.metadata.uid = Some(format!(
            "uid-{}",
            job.metadata.name.as_deref().unwrap_or_default()
        ));
        Self::lock(&self.jobs).push(created.clone());
        Ok(created)
    }

    async fn delete_job(&self, _namespace: &str, name: &str, _uid: &str) -> Result<()> {
        self.push(JobAction::DeleteJob {
            name: name.to_string(),
        });
        Ok(())
    }

    async fn update_cron_job_status(&self, cj: &CronJob) -> Result<CronJob> {
        self.push(JobAction::UpdateCronJobStatus {
            name: cj.metadata.name.clone().unwrap_or_default(),
        });
        Self::lock(&self.cron_statuses).push(cj.clone());
        Ok(cj.clone())
    }

    async fn job_exists(&self, _namespace: &str, name: &str) -> Result<bool> {
        Ok(Self::lock(&self.existing).contains(name))
    }
}
