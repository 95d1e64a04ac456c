//! Leader election through a `coordination.k8s.io` Lease, with client-go's rules: a holder
//! renews the Lease every retry period; others take it over once they have seen the same record
//! unchanged for a whole lease duration (by their own clock, so clock skew between servers does
//! not matter); a holder that cannot renew within the renew deadline stops its work. Several
//! `skiff server`s on one etcd run the scheduler and the controllers in exactly one of them.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio_util::sync::CancellationToken;

/// Timing and identity of one election.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Lease's namespace (`kube-system`, as upstream).
    pub namespace: String,
    /// The Lease's name (`kube-scheduler`, `kube-controller-manager`).
    pub name: String,
    /// This candidate: `<hostname>_<uuid>`, as upstream.
    pub identity: String,
    /// How long others wait after the last renewal they saw before taking over.
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before it gives up leading.
    pub renew_deadline: Duration,
    /// How often candidates try to acquire and the holder renews.
    pub retry_period: Duration,
}

impl Config {
    /// Upstream's defaults (15 s lease, 10 s renew deadline, 2 s retry) for `name`.
    pub fn new(name: &str, timing: Timing) -> Config {
        Config {
            namespace: "kube-system".into(),
            name: name.into(),
            identity: identity(),
            lease_duration: timing.lease_duration,
            renew_deadline: timing.renew_deadline,
            retry_period: timing.retry_period,
        }
    }
}

/// The three durations of an election, shared by every Lease a server takes part in.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// See [`Config::lease_duration`].
    pub lease_duration: Duration,
    /// See [`Config::renew_deadline`].
    pub renew_deadline: Duration,
    /// See [`Config::retry_period`].
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// `<hostname>_<random uuid>`: unique per process, readable in `kubectl get lease`.
fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "skiff".into());
    format!("{host}_{}", uuid::Uuid::new_v4())
}

/// What a candidate remembers of the record it last read: the record and when it changed.
#[derive(Debug, Default)]
struct Observed {
    spec: Option<LeaseSpec>,
    at: Option<Instant>,
}

/// The outcome of reading the current record.
#[derive(Debug, PartialEq)]
enum Decision {
    /// Someone else holds a lease that has not expired by our clock.
    HeldByOther,
    /// We may write this record (renewal, takeover, or first acquisition).
    Write(LeaseSpec),
}

impl Observed {
    /// client-go's `tryAcquireOrRenew` decision on `current`, read at `now` (wall time `wall`).
    fn decide(
        &mut self,
        config: &Config,
        current: &LeaseSpec,
        now: Instant,
        wall: jiff::Timestamp,
    ) -> Decision {
        if self.spec.as_ref() != Some(current) {
            self.spec = Some(current.clone());
            self.at = Some(now);
        }
        let holder = current.holder_identity.as_deref().unwrap_or("");
        let duration = current
            .lease_duration_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or(config.lease_duration);
        let ours = holder == config.identity;
        if !holder.is_empty()
            && !ours
            && self.at.is_some_and(|at| now.duration_since(at) < duration)
        {
            return Decision::HeldByOther;
        }
        let mut next = fresh_spec(config, wall);
        if ours {
            next.acquire_time = current.acquire_time.clone();
            next.lease_transitions = current.lease_transitions;
        } else {
            next.lease_transitions = Some(current.lease_transitions.unwrap_or(0) + 1);
        }
        Decision::Write(next)
    }
}

/// A record naming us as holder, acquired and renewed at `wall`.
fn fresh_spec(config: &Config, wall: jiff::Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(config.lease_duration.as_secs().max(1) as i32),
        acquire_time: Some(MicroTime(wall)),
        renew_time: Some(MicroTime(wall)),
        lease_transitions: Some(0),
        ..LeaseSpec::default()
    }
}

/// The work a leader does; it must return soon after its token is cancelled.
pub type Work = Box<dyn Fn(CancellationToken) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// One election on `api`'s Lease.
struct Elector {
    api: Api<Lease>,
    config: Config,
    observed: Observed,
}

impl Elector {
    /// One attempt to acquire or renew; true when we hold the Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> bool {
        let wall = jiff::Timestamp::now();
        let lease = match self.api.get_opt(&self.config.name).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(lease = %self.config.name, error = %e, "reading the lease failed");
                return false;
            }
        };
        let Some(mut lease) = lease else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(fresh_spec(&self.config, wall)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observed = Observed {
                        spec: created.spec,
                        at: Some(Instant::now()),
                    };
                    true
                }
                Err(e) => {
                    tracing::debug!(lease = %self.config.name, error = %e, "creating the lease failed");
                    false
                }
            };
        };
        let current = lease.spec.clone().unwrap_or_default();
        match self
            .observed
            .decide(&self.config, &current, Instant::now(), wall)
        {
            Decision::HeldByOther => false,
            Decision::Write(next) => {
                // The resourceVersion from the read makes this a compare-and-swap: of two
                // candidates racing for an expired lease, one gets 409 Conflict.
                lease.spec = Some(next);
                match self
                    .api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(written) => {
                        self.observed = Observed {
                            spec: written.spec,
                            at: Some(Instant::now()),
                        };
                        true
                    }
                    Err(e) => {
                        tracing::debug!(lease = %self.config.name, error = %e, "updating the lease failed");
                        false
                    }
                }
            }
        }
    }

    /// Give the Lease up so another candidate takes over at once (client-go's
    /// ReleaseOnCancel): empty holder, one-second duration.
    async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        if let Err(e) = self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            tracing::info!(lease = %self.config.name, error = %e, "releasing the lease failed");
        }
    }
}

/// Run `work` whenever this candidate holds the Lease, until `shutdown`: acquire, run, renew;
/// stop the work when renewal fails past the deadline and compete again; release on shutdown.
pub async fn run(client: kube::Client, config: Config, shutdown: CancellationToken, work: Work) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut elector = Elector {
        api,
        config,
        observed: Observed::default(),
    };
    let retry = elector.config.retry_period;
    loop {
        // Candidate: try every retry period (with up to 20% jitter so candidates spread out).
        loop {
            if elector.try_acquire_or_renew().await {
                break;
            }
            let jitter = retry.mul_f64(rand::random::<f64>() * 0.2);
            tokio::select! {
                _ = tokio::time::sleep(retry + jitter) => {}
                _ = shutdown.cancelled() => return,
            }
        }
        tracing::info!(lease = %elector.config.name, identity = %elector.config.identity, "became leader");
        let leading = shutdown.child_token();
        let mut running = tokio::spawn(work(leading.clone()));
        let mut last_renewal = Instant::now();
        let lost = loop {
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = shutdown.cancelled() => break false,
                _ = &mut running => {
                    // The work ended by itself (it failed to start); compete again later.
                    tracing::warn!(lease = %elector.config.name, "leader work ended");
                    break true;
                }
            }
            if elector.try_acquire_or_renew().await {
                last_renewal = Instant::now();
            } else if last_renewal.elapsed() >= elector.config.renew_deadline {
                break true;
            }
        };
        leading.cancel();
        let _ = running.await;
        if !lost {
            elector.release().await;
            return;
        }
        tracing::warn!(lease = %elector.config.name, "leadership lost; work stopped");
        elector.observed = Observed::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(identity: &str) -> Config {
        Config {
            namespace: "kube-system".into(),
            name: "kube-scheduler".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    fn held_by(holder: &str, renew_secs: i64) -> LeaseSpec {
        let t = jiff::Timestamp::from_second(renew_secs).expect("timestamp");
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(t)),
            renew_time: Some(MicroTime(t)),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_lease_held_by_another_is_respected_until_it_stays_unchanged_for_its_duration() {
        let cfg = config("b");
        let mut seen = Observed::default();
        let t0 = Instant::now();
        let wall = jiff::Timestamp::now();
        let lease = held_by("a", 100);
        assert_eq!(seen.decide(&cfg, &lease, t0, wall), Decision::HeldByOther);
        assert_eq!(
            seen.decide(&cfg, &lease, t0 + Duration::from_secs(14), wall),
            Decision::HeldByOther
        );
        let Decision::Write(next) = seen.decide(&cfg, &lease, t0 + Duration::from_secs(15), wall)
        else {
            panic!("an unchanged record older than the lease duration is taken over");
        };
        assert_eq!(next.holder_identity.as_deref(), Some("b"));
        assert_eq!(next.lease_transitions, Some(4));
        assert_eq!(next.acquire_time, Some(MicroTime(wall)));
    }

    #[test]
    fn a_renewal_by_the_holder_restarts_the_wait() {
        let cfg = config("b");
        let mut seen = Observed::default();
        let t0 = Instant::now();
        let wall = jiff::Timestamp::now();
        assert_eq!(
            seen.decide(&cfg, &held_by("a", 100), t0, wall),
            Decision::HeldByOther
        );
        // The holder renewed at t0+10s: the clock starts again from when we saw it.
        assert_eq!(
            seen.decide(&cfg, &held_by("a", 110), t0 + Duration::from_secs(10), wall),
            Decision::HeldByOther
        );
        assert_eq!(
            seen.decide(&cfg, &held_by("a", 110), t0 + Duration::from_secs(20), wall),
            Decision::HeldByOther
        );
        assert!(matches!(
            seen.decide(&cfg, &held_by("a", 110), t0 + Duration::from_secs(25), wall),
            Decision::Write(_)
        ));
    }

    #[test]
    fn the_holder_renews_keeping_acquire_time_and_transitions() {
        let cfg = config("a");
        let mut seen = Observed::default();
        let wall = jiff::Timestamp::now();
        let current = held_by("a", 100);
        let Decision::Write(next) = seen.decide(&cfg, &current, Instant::now(), wall) else {
            panic!("the holder may always renew");
        };
        assert_eq!(next.acquire_time, current.acquire_time);
        assert_eq!(next.lease_transitions, Some(3));
        assert_eq!(next.renew_time, Some(MicroTime(wall)));
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let cfg = config("b");
        let mut seen = Observed::default();
        let mut released = held_by("a", 100);
        released.holder_identity = None;
        released.lease_duration_seconds = Some(1);
        assert!(matches!(
            seen.decide(&cfg, &released, Instant::now(), jiff::Timestamp::now()),
            Decision::Write(_)
        ));
    }
}
