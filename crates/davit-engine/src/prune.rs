//! `davit prune` on hosts: the project's stopped containers, and the images of releases older than
//! the newest N, on every host.
//!
//! **Architecture Invariant:** prune never removes an image that a kept release pins, that a
//! running container of the project runs, or that any container left on the host (of any project,
//! in any state) was created from; it removes images by ID only after checking that, and never
//! touches release records or the deploy lock. A dry run reads the same and changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::query_parameters::{ListContainersOptions, RemoveImageOptions};
use serde::Serialize;

use crate::hostops::{self, L_IMAGE, L_RELEASE};
use crate::release;
use crate::remote::RemoteRef;

/// What to prune.
#[derive(Debug, Clone)]
pub struct PruneRequest {
    /// Releases whose images stay (the newest N recorded on each host).
    pub keep: usize,
    /// Report only.
    pub dry_run: bool,
}

/// A stopped container of the project, removed (or to be).
#[derive(Debug, Clone, Serialize)]
pub struct PrunedContainer {
    pub name: String,
    pub state: String,
    pub release: Option<String>,
}

/// An image of an old release, removed (or to be).
#[derive(Debug, Clone, Serialize)]
pub struct PrunedImage {
    /// The pinned reference the releases recorded.
    pub image: String,
    pub id: String,
    pub size_bytes: u64,
    /// The old releases that pinned it.
    pub releases: Vec<String>,
}

/// An image of an old release that stays, and why.
#[derive(Debug, Clone, Serialize)]
pub struct KeptImage {
    pub image: String,
    pub reason: String,
}

/// What prune did (or would do) on one host.
#[derive(Debug, Clone, Serialize)]
pub struct HostPrune {
    pub host: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The releases whose images are kept, newest first.
    pub kept_releases: Vec<String>,
    pub containers: Vec<PrunedContainer>,
    pub images: Vec<PrunedImage>,
    /// Images of old releases that stay (still in use, or no longer on the host).
    pub kept_images: Vec<KeptImage>,
    pub reclaimed_bytes: u64,
}

/// Prunes `project` on every host at once; a host that fails is reported, not fatal.
pub async fn prune(project: &str, hosts: &[RemoteRef], req: &PruneRequest) -> Vec<HostPrune> {
    let futs = hosts.iter().map(|h| async move {
        let mut report = HostPrune {
            host: h.name().to_string(),
            ok: true,
            error: None,
            kept_releases: Vec::new(),
            containers: Vec::new(),
            images: Vec::new(),
            kept_images: Vec::new(),
            reclaimed_bytes: 0,
        };
        if let Err(e) = prune_host(project, h, req, &mut report).await {
            report.ok = false;
            report.error = Some(e);
        }
        report
    });
    futures_util::future::join_all(futs).await
}

fn is_stopped(state: &str) -> bool {
    matches!(state, "exited" | "created" | "dead")
}

async fn prune_host(
    project: &str,
    h: &RemoteRef,
    req: &PruneRequest,
    report: &mut HostPrune,
) -> Result<(), String> {
    let docker = h.docker();
    let releases = release::list(h, project).await?;
    let (kept, old) = releases.split_at(req.keep.min(releases.len()));
    report.kept_releases = kept.iter().map(|r| r.id.clone()).collect();

    // The project's stopped containers go.
    let mine = hostops::list_containers(&docker, project, None).await?;
    let mut removed_ids = BTreeSet::new();
    let mut keep_refs: BTreeSet<String> = kept
        .iter()
        .flat_map(|r| r.services.iter().map(|s| s.pinned.clone()))
        .collect();
    for c in &mine {
        let state = c.state.as_ref().map(|s| s.to_string()).unwrap_or_default();
        if !is_stopped(&state) {
            keep_refs.extend(hostops::label(c, L_IMAGE));
            continue;
        }
        let name = hostops::name_of(c);
        if !req.dry_run {
            hostops::remove(&docker, &name).await?;
        }
        removed_ids.extend(c.id.clone());
        report.containers.push(PrunedContainer {
            name,
            state,
            release: hostops::label(c, L_RELEASE),
        });
    }

    // Images in use by what is left on the host, whatever its project or state.
    let all = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .map_err(|e| hostops::derr("listing containers", e))?;
    let mut in_use: HashMap<String, String> = HashMap::new();
    for c in &all {
        if c.id.as_ref().is_some_and(|id| removed_ids.contains(id)) {
            continue;
        }
        if let Some(img) = &c.image_id {
            in_use
                .entry(img.clone())
                .or_insert_with(|| hostops::name_of(c));
        }
    }
    let mut kept_ids = BTreeSet::new();
    for r in &keep_refs {
        if let Ok(i) = docker.inspect_image(r).await {
            kept_ids.extend(i.id);
        }
    }

    // The images of older releases that nothing above needs.
    let mut candidates: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in old {
        for s in &r.services {
            if !keep_refs.contains(&s.pinned) {
                candidates
                    .entry(s.pinned.clone())
                    .or_default()
                    .push(r.id.clone());
            }
        }
    }
    let mut done_ids = BTreeSet::new();
    for (image, rels) in candidates {
        let keep = |reason: &str| KeptImage {
            image: image.clone(),
            reason: reason.to_string(),
        };
        let info = match docker.inspect_image(&image).await {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                report.kept_images.push(keep("not on this host"));
                continue;
            }
            Err(e) => return Err(hostops::derr(&format!("inspecting {image}"), e)),
        };
        let id = info.id.clone().unwrap_or_default();
        if kept_ids.contains(&id) {
            report
                .kept_images
                .push(keep("the same image is pinned by a kept release"));
            continue;
        }
        if let Some(c) = in_use.get(&id) {
            report
                .kept_images
                .push(keep(&format!("in use by container {c}")));
            continue;
        }
        if !done_ids.insert(id.clone()) {
            continue;
        }
        if !req.dry_run {
            docker
                .remove_image(
                    &id,
                    Some(RemoveImageOptions {
                        force: true,
                        noprune: false,
                        ..Default::default()
                    }),
                    None,
                )
                .await
                .map_err(|e| hostops::derr(&format!("removing image {image}"), e))?;
        }
        let size = info.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
        report.reclaimed_bytes += size;
        report.images.push(PrunedImage {
            image,
            id,
            size_bytes: size,
            releases: rels,
        });
    }
    Ok(())
}
