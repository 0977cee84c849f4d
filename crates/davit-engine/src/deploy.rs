//! Plan, then execute: pin images, read what each host runs, diff, then roll each changed service out
//! (in dependency order) under a lock on every host, and record the release on every host.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use serde::Serialize;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use davit_rollout::{Config, Gates, HostSpec, Outcome, Rollout, Strategy};

use crate::driver::{CommitGate, DriverNote, Observer, drive_gated};
use crate::error::Error;
use crate::exec::{HostPart, ServiceExec};
use crate::hooks::{Hook, HookContext, Hooks};
use crate::hostops::{self, L_CONFIG_HASH, L_ENV_HASH, L_IMAGE, L_RELEASE};
use crate::job;
use crate::model::ProjectSpec;
use crate::proxyhost::{self, ProxyImage};
use crate::release::{self, Release, ReleaseOutcome, ReleaseService};
use crate::remote::RemoteRef;

/// Pins an image reference to a digest (`repo:tag` → `repo@sha256:…`).
#[async_trait]
pub trait Resolver: Send + Sync {
    async fn pin(&self, image: &str) -> Result<String, String>;
}

/// What to deploy and how.
#[derive(Clone)]
pub struct Options {
    /// Only these services (all when empty).
    pub services: Vec<String>,
    /// Overrides every service's strategy.
    pub strategy: Option<Strategy>,
    pub gates: Gates,
    pub dry_run: bool,
    /// Who deploys (recorded in the release).
    pub who: String,
    pub lock_ttl: Duration,
    pub force_unlock: bool,
    /// Releases kept per host.
    pub keep_releases: usize,
    /// Hosts handled at once when planning and preparing.
    pub parallel: usize,
    /// Set when this deploy restores an earlier release.
    pub rollback_of: Option<String>,
    /// Run around the deploy, under its lock (`x-davit.hooks` in the `davit` binary).
    pub hooks: Option<Arc<dyn Hooks>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            services: Vec::new(),
            strategy: None,
            gates: Gates::default(),
            dry_run: false,
            who: default_who(),
            lock_ttl: Duration::from_secs(30),
            force_unlock: false,
            keep_releases: 10,
            parallel: 8,
            rollback_of: None,
            hooks: None,
        }
    }
}

/// `user@machine` of whoever runs davit.
pub fn default_who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

/// What the engine reports as it goes.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Note {
    Phase {
        message: String,
    },
    Plan {
        plan: Plan,
    },
    Service {
        service: String,
        #[serde(flatten)]
        note: DriverNote,
    },
    ServiceDone {
        service: String,
        outcome: Outcome,
    },
    Recorded {
        release: String,
        outcome: ReleaseOutcome,
    },
}

/// A callback receiving [`Note`]s.
pub type Notes = Arc<dyn Fn(&Note) + Send + Sync>;

/// What changes on one host for one service.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    Create,
    Update { reasons: Vec<String> },
    Unchanged,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostPlan {
    pub host: String,
    pub change: Change,
    /// Containers serving now.
    pub running: Vec<String>,
    /// The image they run.
    pub running_image: Option<String>,
    #[serde(skip)]
    pub leftovers: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServicePlan {
    pub service: String,
    pub image: String,
    pub pinned: String,
    pub strategy: String,
    pub env_hash: String,
    pub config_hash: String,
    pub proxy: bool,
    pub hosts: Vec<HostPlan>,
}

/// The plan of a deploy.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub project: String,
    pub release: String,
    pub services: Vec<ServicePlan>,
}

impl Plan {
    /// True when some host needs a change.
    pub fn has_changes(&self) -> bool {
        self.services
            .iter()
            .any(|s| s.hosts.iter().any(|h| h.change != Change::Unchanged))
    }

    /// The plan as text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "project {} → release {}", self.project, self.release);
        for s in &self.services {
            let _ = writeln!(
                out,
                "  service {} ({}{}): {}",
                s.service,
                s.strategy,
                if s.proxy { ", behind the proxy" } else { "" },
                s.pinned
            );
            for h in &s.hosts {
                let what = match &h.change {
                    Change::Create => "create".to_string(),
                    Change::Update { reasons } => format!("update ({})", reasons.join(", ")),
                    Change::Unchanged => "unchanged".to_string(),
                };
                let _ = writeln!(out, "    {}: {what}", h.host);
            }
        }
        if !self.has_changes() {
            let _ = writeln!(out, "nothing to do");
        }
        out
    }
}

/// How a deploy ended.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub release: String,
    pub outcome: ReleaseOutcome,
    pub services: Vec<(String, Outcome)>,
    pub message: Option<String>,
}

fn parallel<T, F, Fut>(
    items: Vec<T>,
    n: usize,
    f: F,
) -> impl std::future::Future<Output = Vec<Fut::Output>>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future,
{
    let s = futures_util::stream::iter(items.into_iter().map(f)).buffered(n.max(1));
    s.collect::<Vec<_>>()
}

/// Checks the request and pins every selected service's image. Touches no host.
pub async fn prepare(
    project: &ProjectSpec,
    opts: &Options,
    resolver: &dyn Resolver,
) -> Result<ProjectSpec, Error> {
    let mut p = project.clone();
    for s in &opts.services {
        if p.service(s).is_none() {
            let known: Vec<&str> = p.services.iter().map(|s| s.name.as_str()).collect();
            return Err(Error::Input(format!(
                "no service {s:?} in project {} (services: {})",
                p.name,
                known.join(", ")
            )));
        }
    }
    if !opts.services.is_empty() {
        p.services.retain(|s| opts.services.contains(&s.name));
    }
    for s in &mut p.services {
        if let Some(st) = &opts.strategy {
            s.strategy = st.clone();
        }
        if s.strategy.uses_proxy() && s.proxy.is_none() {
            return Err(Error::Input(format!(
                "service {}: the {} strategy moves traffic with the proxy; add `x-davit: {{proxy: {{port: …}}}}` to the service, or use --strategy recreate",
                s.name,
                s.strategy.name()
            )));
        }
        if s.image.is_empty() {
            return Err(Error::Input(format!(
                "service {}: no image (davit deploys images from a registry; `build:` alone is not enough)",
                s.name
            )));
        }
    }
    for s in &mut p.services {
        if s.pinned.is_none() {
            let pinned = resolver
                .pin(&s.image)
                .await
                .map_err(|message| Error::Resolve {
                    image: s.image.clone(),
                    message,
                })?;
            s.pinned = Some(pinned);
        }
    }
    Ok(p)
}

/// Reads what each host runs and computes the plan.
pub async fn plan(
    project: &ProjectSpec,
    hosts: &[RemoteRef],
    release: &str,
    parallel_hosts: usize,
) -> Result<Plan, Error> {
    let seen = parallel(hosts.to_vec(), parallel_hosts, |h| {
        let name = project.name.clone();
        async move {
            let r = hostops::list_containers(&h.docker(), &name, None).await;
            (h, r)
        }
    })
    .await;
    let mut by_host = Vec::new();
    for (h, r) in seen {
        let list = r.map_err(|message| Error::Host {
            host: h.name().to_string(),
            message,
        })?;
        by_host.push((h, list));
    }
    let mut services = Vec::new();
    for s in &project.services {
        let config_hash = s.config_hash();
        let mut hps = Vec::new();
        // A job runs on the first host only.
        let hosts_of_service = if s.job {
            &by_host[..by_host.len().min(1)]
        } else {
            &by_host[..]
        };
        for (h, list) in hosts_of_service {
            let mine: Vec<_> = list
                .iter()
                .filter(|c| hostops::label(c, hostops::L_SERVICE).as_deref() == Some(&s.name))
                .collect();
            let running: Vec<_> = mine
                .iter()
                .filter(|c| c.state.as_ref().map(|s| s.to_string()).as_deref() == Some("running"))
                .collect();
            let running_names: Vec<String> = running.iter().map(|c| hostops::name_of(c)).collect();
            let leftovers: Vec<String> = mine
                .iter()
                .map(|c| hostops::name_of(c))
                .filter(|n| !running_names.contains(n))
                .collect();
            let running_image = running.first().and_then(|c| hostops::label(c, L_IMAGE));
            let change = if s.job {
                if job::done(&mine, &config_hash) {
                    Change::Unchanged
                } else if mine.is_empty() {
                    Change::Create
                } else {
                    Change::Update {
                        reasons: vec!["the last run differs or did not succeed".into()],
                    }
                }
            } else if running.is_empty() {
                Change::Create
            } else {
                let mut reasons = Vec::new();
                let first = running[0];
                if running_image.as_deref() != Some(s.image_ref()) {
                    reasons.push(format!(
                        "image {} → {}",
                        running_image.as_deref().unwrap_or("?"),
                        s.image_ref()
                    ));
                }
                if hostops::label(first, L_ENV_HASH).as_deref() != Some(&s.env_hash()) {
                    reasons.push("environment".into());
                }
                if reasons.is_empty()
                    && hostops::label(first, L_CONFIG_HASH).as_deref() != Some(&config_hash)
                {
                    reasons.push("configuration".into());
                }
                if running.len() != s.replicas.max(1) as usize {
                    reasons.push(format!("replicas {} → {}", running.len(), s.replicas));
                }
                if running
                    .iter()
                    .any(|c| hostops::label(c, L_RELEASE) != hostops::label(first, L_RELEASE))
                {
                    reasons.push("mixed releases".into());
                }
                if reasons.is_empty() {
                    Change::Unchanged
                } else {
                    Change::Update { reasons }
                }
            };
            hps.push(HostPlan {
                host: h.name().to_string(),
                change,
                running: running_names,
                running_image,
                leftovers,
            });
        }
        services.push(ServicePlan {
            service: s.name.clone(),
            image: s.image.clone(),
            pinned: s.image_ref().to_string(),
            strategy: s.strategy.name().to_string(),
            env_hash: s.env_hash(),
            config_hash,
            proxy: s.proxy.is_some(),
            hosts: hps,
        });
    }
    Ok(Plan {
        project: project.name.clone(),
        release: release.to_string(),
        services,
    })
}

/// Deploys `project` (already [`prepare`]d) to `hosts`. With `opts.dry_run`, returns after the plan.
pub async fn deploy(
    project: ProjectSpec,
    hosts: Vec<RemoteRef>,
    opts: &Options,
    proxy_image: Option<ProxyImage>,
    cancel: watch::Receiver<bool>,
    notes: Notes,
) -> Result<(Plan, Option<Report>), Error> {
    let now = release::unix_now();
    let release_id = release::new_release_id(now);
    let phase = |m: &str| {
        notes(&Note::Phase {
            message: m.to_string(),
        })
    };
    // The proxy image is found before any host is read: a missing binary is bad input.
    let image = match (proxy_image, opts.dry_run) {
        (Some(i), _) => Some(i),
        (None, true) => None,
        (None, false) => {
            let bin = proxyhost::find_proxy_binary().map_err(Error::Input)?;
            Some(ProxyImage::from_binary(&bin).map_err(Error::Input)?)
        }
    };
    phase("reading what each host runs");
    let the_plan = plan(&project, &hosts, &release_id, opts.parallel).await?;
    notes(&Note::Plan {
        plan: the_plan.clone(),
    });
    let Some(image) = image.filter(|_| !opts.dry_run) else {
        return Ok((the_plan, None));
    };
    let needs_proxy = project.services.iter().any(|s| s.proxy.is_some());
    phase(if needs_proxy {
        "starting the proxy on every host"
    } else {
        "loading davit's image on every host"
    });
    let prepared = parallel(hosts.clone(), opts.parallel, |h| {
        let image = image.clone();
        async move {
            let r = if needs_proxy {
                proxyhost::ensure_proxy(&h, &image).await.map(Some)
            } else {
                proxyhost::load_image(&h, &image).await.map(|()| None)
            };
            (h, r)
        }
    })
    .await;
    for (h, r) in prepared {
        let change = r.map_err(|message| Error::Host {
            host: h.name().to_string(),
            message,
        })?;
        if let Some(change @ proxyhost::ProxyChange::Replaced { .. }) = change {
            phase(&format!("{}: {change}", h.name()));
        }
    }

    // The lock, on every host: the first host alone (two deploys to the same hosts meet there, so
    // one of them wins), then the others at once.
    phase("taking the deploy lock on every host");
    let holder = format!("{release_id}-{}", std::process::id());
    let mut leases = Vec::new();
    let mut refused = None;
    let take = |h: RemoteRef| {
        let (image, project, holder) = (&image.tag, &project.name, &holder);
        async move {
            let r = hostops::timed(
                h.name(),
                "deploy lock: take",
                release::acquire(
                    &h,
                    image,
                    project,
                    holder,
                    &opts.who,
                    opts.lock_ttl,
                    opts.force_unlock,
                ),
            )
            .await;
            (h, r)
        }
    };
    let mut taken = Vec::new();
    if let Some((first, rest)) = hosts.split_first() {
        taken.push(take(first.clone()).await);
        if taken[0].1.is_ok() {
            taken.extend(parallel(rest.to_vec(), opts.parallel, take).await);
        }
    }
    for (h, r) in taken {
        match r {
            Ok(l) => leases.push((h.clone(), l)),
            Err(release::LockRefused::Held(held)) => {
                refused.get_or_insert(Error::Locked {
                    host: h.name().to_string(),
                    project: project.name.clone(),
                    who: held.who,
                    age: release::unix_now().saturating_sub(held.heartbeat),
                });
            }
            Err(release::LockRefused::Failed(message)) => {
                refused.get_or_insert(Error::Host {
                    host: h.name().to_string(),
                    message,
                });
            }
        }
    }
    if let Some(e) = refused {
        unlock_all(&leases).await;
        return Err(e);
    }
    // Heartbeats; losing the lease cancels the deploy.
    let (lost_tx, lost_rx) = watch::channel(false);
    let hb_leases = leases.clone();
    let every = (opts.lock_ttl / 3).max(Duration::from_millis(500));
    let heart = tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let beats = hb_leases.iter().map(|(h, l)| async move {
                hostops::timed(h.name(), "deploy lock: heartbeat", release::heartbeat(h, l)).await
            });
            for ((h, _), r) in hb_leases
                .iter()
                .zip(futures_util::future::join_all(beats).await)
            {
                if let Err(e) = r {
                    tracing::warn!(host = h.name(), "deploy lock: {e}");
                    if e.contains("taken over") {
                        let _ = lost_tx.send(true);
                    }
                }
            }
        }
    });
    let cancel = merge_cancel(cancel, lost_rx);

    let mut hook_ctx = HookContext {
        project: project.name.clone(),
        release: release_id.clone(),
        hosts: hosts.iter().map(|h| h.name().to_string()).collect(),
        services: the_plan
            .services
            .iter()
            .filter(|s| s.hosts.iter().any(|h| h.change != Change::Unchanged))
            .map(|s| s.service.clone())
            .collect(),
        who: opts.who.clone(),
        outcome: None,
        rollback_of: opts.rollback_of.clone(),
    };
    let hooks = opts.hooks.clone().filter(|_| the_plan.has_changes());
    let pre = match &hooks {
        Some(h) => {
            phase("running the pre-deploy hook");
            h.run(Hook::PreDeploy, &hook_ctx).await
        }
        None => Ok(()),
    };
    let result = match pre {
        Ok(()) => {
            execute(
                &project,
                &hosts,
                &the_plan,
                &release_id,
                opts,
                cancel,
                &notes,
            )
            .await
        }
        Err(e) => (
            ReleaseOutcome::RolledBack,
            Vec::new(),
            Some(format!(
                "the pre-deploy hook failed, nothing was changed: {e}"
            )),
        ),
    };
    heart.abort();

    // The release, on every host, whatever the outcome.
    let (outcome, services, message) = result;
    let rel = Release {
        id: release_id.clone(),
        project: project.name.clone(),
        created: now,
        time: release::rfc3339(now),
        who: opts.who.clone(),
        outcome: outcome.clone(),
        message: message.clone(),
        hosts: hosts.iter().map(|h| h.name().to_string()).collect(),
        services: project
            .services
            .iter()
            .map(|s| ReleaseService {
                name: s.name.clone(),
                image: s.image.clone(),
                pinned: s.image_ref().to_string(),
                env_hash: s.env_hash(),
                config_hash: s.config_hash(),
                strategy: s.strategy.name().to_string(),
            })
            .collect(),
        model: project.redacted(),
        rollback_of: opts.rollback_of.clone(),
    };
    let env: BTreeMap<String, BTreeMap<String, String>> = project
        .services
        .iter()
        .map(|s| (s.name.clone(), s.environment.clone()))
        .collect();
    phase("recording the release on every host");
    let (rel, env, tag) = (&rel, &env, &image.tag);
    parallel(hosts.clone(), opts.parallel, |h| async move {
        hostops::timed(h.name(), "release: record and prune", async {
            if let Err(e) = release::record(&h, tag, rel, env).await {
                tracing::warn!(host = h.name(), "{e}");
            }
            if let Err(e) = release::prune(&h, &rel.project, opts.keep_releases).await {
                tracing::warn!(host = h.name(), "{e}");
            }
        })
        .await
    })
    .await;
    notes(&Note::Recorded {
        release: release_id.clone(),
        outcome: outcome.clone(),
    });
    if let Some(h) = &hooks {
        phase("running the post-deploy hook");
        hook_ctx.outcome = Some(outcome.clone());
        if let Err(e) = h.run(Hook::PostDeploy, &hook_ctx).await {
            tracing::warn!("the post-deploy hook failed: {e}");
            phase(&format!("the post-deploy hook failed: {e}"));
        }
    }
    unlock_all(&leases).await;
    Ok((
        the_plan,
        Some(Report {
            release: release_id,
            outcome,
            services,
            message,
        }),
    ))
}

/// Releases every lease at once.
async fn unlock_all(leases: &[(RemoteRef, release::Lease)]) {
    let unlocks = leases.iter().map(|(h, l)| {
        hostops::timed(
            h.name(),
            "deploy lock: release",
            release::release_lock(h, l),
        )
    });
    futures_util::future::join_all(unlocks).await;
}

fn merge_cancel(
    mut a: watch::Receiver<bool>,
    mut b: watch::Receiver<bool>,
) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(*a.borrow() || *b.borrow());
    tokio::spawn(async move {
        let (mut a_open, mut b_open) = (true, true);
        while a_open || b_open {
            let fired = tokio::select! {
                r = a.changed(), if a_open => match r {
                    Ok(()) => *a.borrow(),
                    Err(_) => { a_open = false; false }
                },
                r = b.changed(), if b_open => match r {
                    Ok(()) => *b.borrow(),
                    Err(_) => { b_open = false; false }
                },
                () = tx.closed() => return,
            };
            if fired {
                let _ = tx.send(true);
                return;
            }
        }
    });
    rx
}

/// A service rolled out and held before its point of no return, waiting for the others.
struct HeldService {
    name: String,
    decision: oneshot::Sender<bool>,
    task: JoinHandle<Outcome>,
}

/// Rolls out every changed service in dependency order. Each rollout is held before its point of no
/// return (old containers kept) until every service is through; then all are committed. When one
/// fails (or the deploy is interrupted), every service already switched is reverted too, so the
/// project as a whole goes back to the previous release.
async fn execute(
    project: &ProjectSpec,
    hosts: &[RemoteRef],
    the_plan: &Plan,
    release_id: &str,
    opts: &Options,
    cancel: watch::Receiver<bool>,
    notes: &Notes,
) -> (ReleaseOutcome, Vec<(String, Outcome)>, Option<String>) {
    let shared = Arc::new(project.clone());
    let by_name: HashMap<&str, &RemoteRef> = hosts.iter().map(|h| (h.name(), h)).collect();
    let mut held: Vec<HeldService> = Vec::new();
    let mut failure: Option<(String, Outcome)> = None;
    let mut problem: Option<String> = None;
    let mut jobs_done: Vec<(String, Outcome)> = Vec::new();
    for (svc, sp) in project.services.iter().zip(&the_plan.services) {
        let changed: Vec<&HostPlan> = sp
            .hosts
            .iter()
            .filter(|h| h.change != Change::Unchanged)
            .collect();
        // A job also runs again when a service waiting on it changes.
        let dependents_change = svc.job
            && project
                .services
                .iter()
                .zip(&the_plan.services)
                .any(|(d, dp)| {
                    d.depends_on.contains(&svc.name)
                        && dp.hosts.iter().any(|h| h.change != Change::Unchanged)
                });
        if changed.is_empty() && !dependents_change {
            continue;
        }
        if *cancel.borrow() {
            problem = Some("interrupted".into());
            break;
        }
        if svc.job {
            let Some(host) = sp
                .hosts
                .first()
                .and_then(|hp| hosts.iter().find(|h| h.name() == hp.host))
            else {
                continue;
            };
            notes(&Note::Phase {
                message: format!("running job {} on {}", svc.name, host.name()),
            });
            let r = job::run(
                host,
                project,
                svc,
                release_id,
                opts.gates.progress_deadline,
                cancel.clone(),
            )
            .await;
            let outcome = match &r {
                Ok(()) => Outcome::Succeeded {
                    warnings: Vec::new(),
                },
                Err(message) => Outcome::RolledBack {
                    cause: davit_rollout::Cause::StepFailed {
                        host: host.name().to_string(),
                        step: davit_rollout::Step::StartNew,
                        message: message.clone(),
                    },
                },
            };
            if r.is_err() {
                failure = Some((svc.name.clone(), outcome));
                break;
            }
            // A job that ran cannot be undone (a migration stays migrated): it is reported now.
            notes(&Note::ServiceDone {
                service: svc.name.clone(),
                outcome: outcome.clone(),
            });
            jobs_done.push((svc.name.clone(), outcome));
            continue;
        }
        let mut parts = HashMap::new();
        let mut specs = Vec::new();
        for hp in &changed {
            let Some(remote) = by_name.get(hp.host.as_str()) else {
                continue;
            };
            specs.push(HostSpec::new(hp.host.clone(), !hp.running.is_empty()));
            parts.insert(
                hp.host.clone(),
                HostPart::new((*remote).clone(), hp.running.clone(), hp.leftovers.clone()),
            );
        }
        let mut gates = opts.gates.clone();
        if let Some(t) = svc.min_healthy_time {
            gates.min_healthy_time = t;
        }
        let config = Config {
            strategy: svc.strategy.clone(),
            gates,
        };
        let rollout = match Rollout::new(config, specs) {
            Ok(r) => r.hold_before_cleanup(),
            Err(e) => {
                problem = Some(format!("service {}: {e}", svc.name));
                break;
            }
        };
        let exec = Arc::new(ServiceExec {
            project: shared.clone(),
            svc: svc.clone(),
            release: release_id.to_string(),
            hosts: parts,
            route_timeout: opts.gates.healthy_deadline,
        });
        let n = notes.clone();
        let name = svc.name.clone();
        let observer: Observer = Arc::new(move |d: &DriverNote| {
            n(&Note::Service {
                service: name.clone(),
                note: d.clone(),
            })
        });
        let (reached_tx, reached_rx) = oneshot::channel();
        let (decision_tx, decision_rx) = oneshot::channel();
        let gate = CommitGate {
            reached: reached_tx,
            decision: decision_rx,
        };
        let mut task = tokio::spawn(drive_gated(
            rollout,
            exec,
            cancel.clone(),
            Some(observer),
            Some(gate),
        ));
        // Held (its outcome comes after the decision), or ended early (it failed): the driver
        // drops its end of `reached` when it returns without being held.
        if reached_rx.await.is_err() {
            let outcome = join_outcome(&mut task).await;
            failure = Some((svc.name.clone(), outcome));
            break;
        }
        held.push(HeldService {
            name: svc.name.clone(),
            decision: decision_tx,
            task,
        });
        if let Some(f) = failed_while_held(&mut held).await {
            failure = Some(f);
            break;
        }
    }
    // A held service that turned unhealthy reverted itself: then none may be committed.
    if failure.is_none()
        && problem.is_none()
        && let Some(f) = failed_while_held(&mut held).await
    {
        failure = Some(f);
    }
    let ok = failure.is_none() && problem.is_none();
    // Every service is through: commit them all. Otherwise revert every held one.
    let mut results = Vec::new();
    let mut finals = Vec::new();
    for h in held {
        let _ = h.decision.send(ok);
        finals.push((h.name, h.task));
    }
    for (name, mut task) in finals {
        let outcome = join_outcome(&mut task).await;
        notes(&Note::ServiceDone {
            service: name.clone(),
            outcome: outcome.clone(),
        });
        results.push((name, outcome));
    }
    let reverted: Vec<String> = results.iter().map(|(n, _)| n.clone()).collect();
    let incomplete: Vec<String> = results
        .iter()
        .filter_map(|(n, o)| match o {
            Outcome::RollbackIncomplete { hosts, .. } => {
                Some(format!("service {n} on {}", hosts.join(", ")))
            }
            _ => None,
        })
        .collect();
    // Jobs that ran come first (they are not reverted: a migration stays migrated).
    results.splice(0..0, jobs_done);
    if let Some((name, outcome)) = failure {
        notes(&Note::ServiceDone {
            service: name.clone(),
            outcome: outcome.clone(),
        });
        results.push((name.clone(), outcome.clone()));
        let also = if reverted.is_empty() {
            String::new()
        } else {
            format!(
                "; service(s) {} reverted to the previous release too",
                reverted.join(", ")
            )
        };
        return match outcome {
            Outcome::RollbackIncomplete { cause, hosts } => {
                let mut not = vec![format!("service {name} on {}", hosts.join(", "))];
                not.extend(incomplete);
                (
                    ReleaseOutcome::RollbackIncomplete,
                    results,
                    Some(format!(
                        "service {name}: {cause}{also}; not restored: {}",
                        not.join("; ")
                    )),
                )
            }
            Outcome::RolledBack { cause } => outcome_of(
                incomplete,
                results,
                format!("service {name}: {cause}{also}"),
            ),
            Outcome::Succeeded { .. } => outcome_of(
                incomplete,
                results,
                format!("service {name}: ended before the others were through{also}"),
            ),
        };
    }
    if let Some(why) = problem {
        let also = if reverted.is_empty() {
            String::new()
        } else {
            format!("; service(s) {} reverted", reverted.join(", "))
        };
        return outcome_of(incomplete, results, format!("{why}{also}"));
    }
    // Committed: a commit can still fail if a service turned unhealthy while others rolled.
    if let Some((name, o)) = results.iter().find(|(_, o)| !o.is_success()) {
        let msg = format!("service {name}: {o}");
        return if matches!(o, Outcome::RollbackIncomplete { .. }) {
            (ReleaseOutcome::RollbackIncomplete, results, Some(msg))
        } else {
            (ReleaseOutcome::RolledBack, results, Some(msg))
        };
    }
    (ReleaseOutcome::Succeeded, results, None)
}

fn outcome_of(
    incomplete: Vec<String>,
    results: Vec<(String, Outcome)>,
    message: String,
) -> (ReleaseOutcome, Vec<(String, Outcome)>, Option<String>) {
    if incomplete.is_empty() {
        (ReleaseOutcome::RolledBack, results, Some(message))
    } else {
        (
            ReleaseOutcome::RollbackIncomplete,
            results,
            Some(format!(
                "{message}; not restored: {}",
                incomplete.join("; ")
            )),
        )
    }
}

/// A held service whose rollout ended while held (it turned unhealthy and reverted itself): taken
/// out of `held`, with its outcome.
async fn failed_while_held(held: &mut Vec<HeldService>) -> Option<(String, Outcome)> {
    let i = held.iter().position(|h| h.task.is_finished())?;
    let mut h = held.remove(i);
    let outcome = join_outcome(&mut h.task).await;
    Some((h.name, outcome))
}

async fn join_outcome(task: &mut JoinHandle<Outcome>) -> Outcome {
    task.await.unwrap_or_else(|e| Outcome::RollbackIncomplete {
        cause: davit_rollout::Cause::Aborted {
            why: format!("the rollout task died: {e}"),
        },
        hosts: Vec::new(),
    })
}

/// The releases of `project` across hosts (union by id), newest first.
pub async fn releases(project: &str, hosts: &[RemoteRef]) -> Result<Vec<Release>, Error> {
    let mut all: BTreeMap<String, Release> = BTreeMap::new();
    for h in hosts {
        let list = release::list(h, project)
            .await
            .map_err(|message| Error::Host {
                host: h.name().to_string(),
                message,
            })?;
        for r in list {
            all.entry(r.id.clone()).or_insert(r);
        }
    }
    Ok(all.into_values().rev().collect())
}

/// The project to restore for `davit rollback`: the named release, or the newest succeeded one
/// before the newest succeeded one. Environment values come from the hosts' records.
pub async fn rollback_target(
    project: &str,
    hosts: &[RemoteRef],
    to: Option<&str>,
) -> Result<(Release, ProjectSpec), Error> {
    let all = releases(project, hosts).await?;
    let ok: Vec<&Release> = all
        .iter()
        .filter(|r| r.outcome == ReleaseOutcome::Succeeded)
        .collect();
    let target = match to {
        Some(id) => all
            .iter()
            .find(|r| r.id == id)
            .ok_or_else(|| Error::NoRelease(format!("no release {id} of project {project} on these hosts")))?,
        None => ok.get(1).copied().ok_or_else(|| {
            Error::NoRelease(format!(
                "project {project} has {} succeeded release(s) on these hosts; rollback needs an earlier one",
                ok.len()
            ))
        })?,
    };
    let first = hosts
        .first()
        .ok_or_else(|| Error::Input("no host".into()))?;
    let env = release::env_of(first, project, &target.id)
        .await
        .map_err(|message| Error::Host {
            host: first.name().to_string(),
            message,
        })?;
    let mut spec = target.model.clone();
    for s in &mut spec.services {
        if let Some(e) = env.get(&s.name) {
            s.environment = e.clone();
        }
        if let Some(rs) = target.services.iter().find(|r| r.name == s.name) {
            s.pinned = Some(rs.pinned.clone());
        }
    }
    Ok((target.clone(), spec))
}
