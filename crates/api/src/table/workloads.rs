//! Printers of pods and the workload controllers: pods (with the full STATUS/RESTARTS
//! algorithm), podtemplates, replicationcontrollers, replicasets, deployments, statefulsets,
//! daemonsets, jobs, cronjobs, controllerrevisions, poddisruptionbudgets.

use jiff::Timestamp;
use serde_json::Value;

use super::duration::{human_duration, since};
use super::format::{
    arr_at, bool_ptr, container_cells, created, deleting, format_label_selector, format_labels,
    get, int_at, int_or_string, name, obj_at, opt_bool_at, opt_int_at, opt_str_at, selector_string,
    str_at, time_at,
};
use super::{AGE, CONTAINERS, Column, IMAGES, NAME, Printer, col, wide};

pub(super) fn printer(group: &str, resource: &str) -> Option<Printer> {
    let (columns, cells): (&'static [Column], super::CellsFn) = match (group, resource) {
        ("", "pods") => (POD_COLUMNS, pod_cells),
        ("", "podtemplates") => (POD_TEMPLATE_COLUMNS, pod_template_cells),
        ("", "replicationcontrollers") => (RC_COLUMNS, rc_cells),
        ("apps", "replicasets") => (RS_COLUMNS, rs_cells),
        ("apps", "deployments") => (DEPLOYMENT_COLUMNS, deployment_cells),
        ("apps", "statefulsets") => (STATEFULSET_COLUMNS, statefulset_cells),
        ("apps", "daemonsets") => (DAEMONSET_COLUMNS, daemonset_cells),
        ("apps", "controllerrevisions") => (CONTROLLER_REVISION_COLUMNS, controller_revision_cells),
        ("batch", "jobs") => (JOB_COLUMNS, job_cells),
        ("batch", "cronjobs") => (CRONJOB_COLUMNS, cronjob_cells),
        ("policy", "poddisruptionbudgets") => (PDB_COLUMNS, pdb_cells),
        _ => return None,
    };
    Some(Printer { columns, cells })
}

// ---------------------------------------------------------------------------------------------
// pods

const POD_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    col(
        "Status",
        "string",
        "The aggregate status of the containers in this pod.",
    ),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide(col(
        "IP",
        "string",
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
    )),
    wide(col(
        "Node",
        "string",
        "NodeName indicates in which node this pod is scheduled.",
    )),
    wide(col(
        "Nominated Node",
        "string",
        "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.",
    )),
    wide(col(
        "Readiness Gates",
        "string",
        "If specified, all readiness gates will be evaluated for pod readiness.",
    )),
];

/// READY, STATUS and RESTARTS of a pod, as upstream `printPod` computes them.
struct PodSummary {
    ready: String,
    status: String,
    restarts: String,
}

/// Whether an init container is a sidecar (`restartPolicy: Always`).
fn is_sidecar(pod: &Value, container_name: &str) -> bool {
    arr_at(pod, &["spec", "initContainers"]).iter().any(|c| {
        str_at(c, &["name"]) == container_name && str_at(c, &["restartPolicy"]) == "Always"
    })
}

/// The first condition of `ty` in `status.conditions`, if any.
fn condition<'a>(obj: &'a Value, ty: &str) -> Option<&'a Value> {
    arr_at(obj, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == ty)
}

fn condition_true(obj: &Value, ty: &str) -> bool {
    condition(obj, ty).is_some_and(|c| str_at(c, &["status"]) == "True")
}

/// Keeps the latest `lastState.terminated.finishedAt` of a container status.
fn note_last_termination(latest: &mut Option<Timestamp>, status: &Value) {
    if let Some(t) = time_at(status, &["lastState", "terminated", "finishedAt"])
        && latest.is_none_or(|cur| cur < t)
    {
        *latest = Some(t);
    }
}

/// `Signal:<n>` / `ExitCode:<n>` of a terminated state without a reason.
fn exit_text(terminated: &Value) -> String {
    let signal = int_at(terminated, &["signal"]);
    if signal != 0 {
        format!("Signal:{signal}")
    } else {
        format!("ExitCode:{}", int_at(terminated, &["exitCode"]))
    }
}

fn pod_summary(pod: &Value, now: Timestamp) -> PodSummary {
    let spec_init = arr_at(pod, &["spec", "initContainers"]);
    let total = arr_at(pod, &["spec", "containers"]).len()
        + spec_init
            .iter()
            .filter(|c| str_at(c, &["restartPolicy"]) == "Always")
            .count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;

    let phase = str_at(pod, &["status", "phase"]);
    let mut reason = match str_at(pod, &["status", "reason"]) {
        "" => phase.to_owned(),
        r => r.to_owned(),
    };
    if arr_at(pod, &["status", "conditions"]).iter().any(|c| {
        str_at(c, &["type"]) == "PodScheduled" && str_at(c, &["reason"]) == "SchedulingGated"
    }) {
        reason = "SchedulingGated".to_owned();
    }

    let mut initializing = false;
    for (i, cs) in arr_at(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        let count = int_at(cs, &["restartCount"]);
        restarts += count;
        note_last_termination(&mut last_restart, cs);
        let sidecar = is_sidecar(pod, str_at(cs, &["name"]));
        if sidecar {
            sidecar_restarts += count;
            note_last_termination(&mut last_sidecar_restart, cs);
        }
        let terminated = obj_at(cs, &["state", "terminated"]).map(|_| &cs["state"]["terminated"]);
        let waiting_reason = opt_str_at(cs, &["state", "waiting", "reason"]).unwrap_or("");
        if terminated.is_some_and(|t| int_at(t, &["exitCode"]) == 0) {
            continue;
        }
        if sidecar && opt_bool_at(cs, &["started"]) == Some(true) {
            if opt_bool_at(cs, &["ready"]) == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(t) = terminated {
            match str_at(t, &["reason"]) {
                "" => format!("Init:{}", exit_text(t)),
                r => format!("Init:{r}"),
            }
        } else if get(cs, &["state", "waiting"]).is_some_and(Value::is_object)
            && !waiting_reason.is_empty()
            && waiting_reason != "PodInitializing"
        {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", spec_init.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(pod, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        // Walked from last to first, so the first container's state has the final say.
        for cs in arr_at(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts += int_at(cs, &["restartCount"]);
            note_last_termination(&mut last_restart, cs);
            let waiting_reason = opt_str_at(cs, &["state", "waiting", "reason"]).unwrap_or("");
            let terminated =
                obj_at(cs, &["state", "terminated"]).map(|_| &cs["state"]["terminated"]);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_owned();
            } else if let Some(t) = terminated {
                reason = match str_at(t, &["reason"]) {
                    "" => exit_text(t),
                    r => r.to_owned(),
                };
            } else if opt_bool_at(cs, &["ready"]) == Some(true)
                && obj_at(cs, &["state", "running"]).is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(pod, "Ready") {
                "Running".to_owned()
            } else {
                "NotReady".to_owned()
            };
        }
    }

    if deleting(pod) {
        if str_at(pod, &["status", "reason"]) == "NodeLost" {
            reason = "Unknown".to_owned();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".to_owned();
        }
    }

    let restarts_text = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), now)),
        _ => restarts.to_string(),
    };
    PodSummary {
        ready: format!("{ready}/{total}"),
        status: reason,
        restarts: restarts_text,
    }
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".to_owned()
    } else {
        s.to_owned()
    }
}

fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let summary = pod_summary(pod, now);
    let ip = arr_at(pod, &["status", "podIPs"])
        .first()
        .map_or("", |ip| str_at(ip, &["ip"]));
    let gates = arr_at(pod, &["spec", "readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let passing = gates
            .iter()
            .filter(|g| condition_true(pod, str_at(g, &["conditionType"])))
            .count();
        format!("{passing}/{}", gates.len())
    };
    vec![
        name(pod).into(),
        summary.ready.into(),
        summary.status.into(),
        summary.restarts.into(),
        since(created(pod), now).into(),
        or_none(ip).into(),
        or_none(str_at(pod, &["spec", "nodeName"])).into(),
        or_none(str_at(pod, &["status", "nominatedNodeName"])).into(),
        readiness_gates.into(),
    ]
}

// ---------------------------------------------------------------------------------------------
// podtemplates

const POD_TEMPLATE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Containers",
        "string",
        "Names of each container in the template.",
    ),
    col(
        "Images",
        "string",
        "Images referenced by each container in the template.",
    ),
    col("Pod Labels", "string", "The labels for the pod template."),
];

fn pod_template_cells(obj: &Value, _now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(arr_at(obj, &["template", "spec", "containers"]));
    vec![
        name(obj).into(),
        names.into(),
        images.into(),
        format_labels(obj_at(obj, &["template", "metadata", "labels"])).into(),
    ]
}

// ---------------------------------------------------------------------------------------------
// replicationcontrollers, replicasets

const DESIRED_DESC: &str = "Replicas is the number of desired replicas.";
const CURRENT_DESC: &str = "Replicas is the most recently observed number of replicas.";
const READY_DESC: &str = "The number of ready replicas for this controller.";
const SELECTOR_DESC: &str =
    "Selector is a label query over pods that should match the replica count.";

const RC_COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", DESIRED_DESC),
    col("Current", "integer", CURRENT_DESC),
    col("Ready", "integer", READY_DESC),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(col("Selector", "string", SELECTOR_DESC)),
];
const RS_COLUMNS: &[Column] = RC_COLUMNS;

/// `spec.replicas`, defaulted to 1 as the API server's defaulting does.
fn spec_replicas(obj: &Value) -> i64 {
    opt_int_at(obj, &["spec", "replicas"]).unwrap_or(1)
}

fn template_containers(obj: &Value) -> (String, String) {
    container_cells(arr_at(obj, &["spec", "template", "spec", "containers"]))
}

fn rc_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = template_containers(obj);
    vec![
        name(obj).into(),
        spec_replicas(obj).into(),
        int_at(obj, &["status", "replicas"]).into(),
        int_at(obj, &["status", "readyReplicas"]).into(),
        since(created(obj), now).into(),
        names.into(),
        images.into(),
        format_labels(obj_at(obj, &["spec", "selector"])).into(),
    ]
}

fn rs_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = template_containers(obj);
    vec![
        name(obj).into(),
        spec_replicas(obj).into(),
        int_at(obj, &["status", "replicas"]).into(),
        int_at(obj, &["status", "readyReplicas"]).into(),
        since(created(obj), now).into(),
        names.into(),
        images.into(),
        format_label_selector(get(obj, &["spec", "selector"])).into(),
    ]
}

// ---------------------------------------------------------------------------------------------
// deployments

const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col(
        "Up-to-date",
        "string",
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    col(
        "Available",
        "string",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(col(
        "Selector",
        "string",
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
    )),
];

fn deployment_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = template_containers(obj);
    // Unlike the other controllers, upstream prints the raw selector string here: empty when
    // the selector is empty, `<invalid>` when malformed.
    let selector =
        selector_string(get(obj, &["spec", "selector"])).unwrap_or_else(|_| "<invalid>".to_owned());
    vec![
        name(obj).into(),
        format!(
            "{}/{}",
            int_at(obj, &["status", "readyReplicas"]),
            spec_replicas(obj)
        )
        .into(),
        int_at(obj, &["status", "updatedReplicas"]).into(),
        int_at(obj, &["status", "availableReplicas"]).into(),
        since(created(obj), now).into(),
        names.into(),
        images.into(),
        selector.into(),
    ]
}

// ---------------------------------------------------------------------------------------------
// statefulsets

const STATEFULSET_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];

fn statefulset_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = template_containers(obj);
    vec![
        name(obj).into(),
        format!(
            "{}/{}",
            int_at(obj, &["status", "readyReplicas"]),
            spec_replicas(obj)
        )
        .into(),
        since(created(obj), now).into(),
        names.into(),
        images.into(),
    ]
}

// ---------------------------------------------------------------------------------------------
// daemonsets

const DAEMONSET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).",
    ),
    col(
        "Current",
        "integer",
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
    ),
    col(
        "Ready",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
    ),
    col(
        "Up-to-date",
        "integer",
        "The total number of nodes that are running updated daemon pod",
    ),
    col(
        "Available",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
    ),
    col(
        "Node Selector",
        "string",
        "NodeSelector is a selector which must be true for the pod to fit on a node.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(col(
        "Selector",
        "string",
        "A label query over pods that are managed by the daemon set.",
    )),
];

fn daemonset_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = template_containers(obj);
    vec![
        name(obj).into(),
        int_at(obj, &["status", "desiredNumberScheduled"]).into(),
        int_at(obj, &["status", "currentNumberScheduled"]).into(),
        int_at(obj, &["status", "numberReady"]).into(),
        int_at(obj, &["status", "updatedNumberScheduled"]).into(),
        int_at(obj, &["status", "numberAvailable"]).into(),
        format_labels(obj_at(obj, &["spec", "template", "spec", "nodeSelector"])).into(),
        since(created(obj), now).into(),
        names.into(),
        images.into(),
        format_label_selector(get(obj, &["spec", "selector"])).into(),
    ]
}

// ---------------------------------------------------------------------------------------------
// jobs, cronjobs

const JOB_SELECTOR_DESC: &str = "A label query over pods that should match the pod count.";

const JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col(
        "Completions",
        "string",
        "The number of pods which reached phase Succeeded.",
    ),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(col("Selector", "string", JOB_SELECTOR_DESC)),
];

/// Upstream `hasJobCondition`: the first condition of the type decides.
fn job_condition(job: &Value, ty: &str) -> bool {
    condition_true(job, ty)
}

fn job_cells(job: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = int_at(job, &["status", "succeeded"]);
    let completions = match opt_int_at(job, &["spec", "completions"]) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match opt_int_at(job, &["spec", "parallelism"]).unwrap_or(0) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let start = time_at(job, &["status", "startTime"]);
    let end = time_at(job, &["status", "completionTime"]);
    let duration = match (start, end) {
        (None, _) => String::new(),
        (Some(s), None) => human_duration(now.duration_since(s)),
        (Some(s), Some(e)) => human_duration(e.duration_since(s)),
    };
    let status = if job_condition(job, "Complete") {
        "Complete"
    } else if job_condition(job, "Failed") {
        "Failed"
    } else if deleting(job) {
        "Terminating"
    } else if job_condition(job, "Suspended") {
        "Suspended"
    } else if job_condition(job, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = template_containers(job);
    vec![
        name(job).into(),
        status.into(),
        completions.into(),
        duration.into(),
        since(created(job), now).into(),
        names.into(),
        images.into(),
        format_label_selector(get(job, &["spec", "selector"])).into(),
    ]
}

const CRONJOB_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Schedule",
        "string",
        "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
    ),
    col(
        "Timezone",
        "string",
        "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
    ),
    col(
        "Suspend",
        "boolean",
        "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.",
    ),
    col(
        "Active",
        "integer",
        "A list of pointers to currently running jobs.",
    ),
    col(
        "Last Schedule",
        "string",
        "Information when was the last time the job was successfully scheduled.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(col("Selector", "string", JOB_SELECTOR_DESC)),
];

fn cronjob_cells(cj: &Value, now: Timestamp) -> Vec<Value> {
    let last_schedule = match get(cj, &["status", "lastScheduleTime"]) {
        Some(v) if !v.is_null() => since(time_at(cj, &["status", "lastScheduleTime"]), now),
        _ => "<none>".to_owned(),
    };
    let job_spec = &["spec", "jobTemplate", "spec"];
    let template = get(cj, job_spec).unwrap_or(&Value::Null);
    let (names, images) = container_cells(arr_at(template, &["template", "spec", "containers"]));
    vec![
        name(cj).into(),
        str_at(cj, &["spec", "schedule"]).into(),
        opt_str_at(cj, &["spec", "timeZone"])
            .unwrap_or("<none>")
            .into(),
        bool_ptr(opt_bool_at(cj, &["spec", "suspend"])).into(),
        (arr_at(cj, &["status", "active"]).len() as i64).into(),
        last_schedule.into(),
        since(created(cj), now).into(),
        names.into(),
        images.into(),
        format_label_selector(get(template, &["selector"])).into(),
    ]
}

// ---------------------------------------------------------------------------------------------
// controllerrevisions

const CONTROLLER_REVISION_COLUMNS: &[Column] = &[
    NAME,
    col("Controller", "string", "Controller of the object"),
    col(
        "Revision",
        "string",
        "Revision indicates the revision of the state represented by Data.",
    ),
    AGE,
];

/// `kind.group/name` (lower-case) of the controlling owner reference, `<none>` without one.
fn controller_of(obj: &Value) -> String {
    let Some(owner) = arr_at(obj, &["metadata", "ownerReferences"])
        .iter()
        .find(|o| opt_bool_at(o, &["controller"]) == Some(true))
    else {
        return "<none>".to_owned();
    };
    let api_version = str_at(owner, &["apiVersion"]);
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let kind = str_at(owner, &["kind"]);
    let owner_name = str_at(owner, &["name"]);
    let group_kind = match (kind, group) {
        ("", "") => return owner_name.to_owned(),
        (k, "") => k.to_owned(),
        (k, g) => format!("{k}.{g}"),
    };
    format!("{}/{owner_name}", group_kind.to_lowercase())
}

fn controller_revision_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj).into(),
        controller_of(obj).into(),
        int_at(obj, &["revision"]).into(),
        since(created(obj), now).into(),
    ]
}

// ---------------------------------------------------------------------------------------------
// poddisruptionbudgets

const PDB_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Min Available",
        "string",
        "The minimum number of pods that must be available.",
    ),
    col(
        "Max Unavailable",
        "string",
        "The maximum number of pods that may be unavailable.",
    ),
    col(
        "Allowed Disruptions",
        "integer",
        "Calculated number of pods that may be disrupted at this time.",
    ),
    AGE,
];

fn pdb_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let or_na = |v: Option<String>| v.unwrap_or_else(|| "N/A".to_owned());
    vec![
        name(obj).into(),
        or_na(int_or_string(get(obj, &["spec", "minAvailable"]))).into(),
        or_na(int_or_string(get(obj, &["spec", "maxUnavailable"]))).into(),
        int_at(obj, &["status", "disruptionsAllowed"]).into(),
        since(created(obj), now).into(),
    ]
}

#[cfg(test)]
#[path = "workloads_tests.rs"]
mod tests;
