//! `prune --keep N`: which tags go, decided by a pure function ([`plan`]) from what the registry
//! says ([`TagInfo`]), then carried out by deleting manifests by digest.
//!
//! Order, newest first: semantic-version order when every tag is a version (`1.10.0` above `1.9.0`,
//! `v` prefix allowed); otherwise push time (the image config's `created`), ties broken by version
//! and then by the registry's listing order. Never deleted: the newest N, tags given in
//! [`PruneOptions::protect`], tags whose digest is in [`PruneOptions::running`] (what hosts run), and
//! tags sharing a digest with a kept tag (deleting a manifest deletes every tag on it).

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use futures_util::StreamExt;

use crate::tags::version_of;
use crate::{Error, Registry};

/// What the registry says about one tag.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TagInfo {
    pub tag: String,
    pub digest: String,
    /// The image config's `created` (RFC 3339), when known.
    pub created: Option<String>,
}

/// How to prune.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// How many of the newest tags to keep.
    pub keep: usize,
    /// Tags never deleted.
    pub protect: Vec<String>,
    /// Digests never deleted (what the hosts currently run: the engine passes them).
    pub running: Vec<String>,
    /// Decide, report, delete nothing.
    pub dry_run: bool,
}

/// Why a tag stays.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepReason {
    Newest,
    Protected,
    Running,
    /// Its digest is also under a kept tag.
    SharesDigest,
}

/// The decision: what stays, what goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PrunePlan {
    /// `semver` or `push_time`.
    pub order: &'static str,
    /// Kept tags, newest first.
    pub keep: Vec<(String, KeepReason)>,
    /// Deleted tags (newest first) and their digests.
    pub delete: Vec<(String, String)>,
    /// The manifests deleted, by digest.
    pub digests: Vec<String>,
    /// Whether anything was actually deleted (false for a dry run).
    pub applied: bool,
}

/// A comparable key of an RFC 3339 UTC time: seconds part, then nanoseconds.
fn time_key(t: &str) -> (String, u64) {
    let t = t.trim_end_matches('Z');
    let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits: String = frac
        .chars()
        .take_while(char::is_ascii_digit)
        .take(9)
        .collect();
    let nanos = format!("{digits:0<9}").parse().unwrap_or(0);
    (secs.to_string(), nanos)
}

/// Decides what to delete. `tags` in the registry's listing order.
pub fn plan(tags: &[TagInfo], opts: &PruneOptions) -> PrunePlan {
    let all_versions = !tags.is_empty() && tags.iter().all(|t| version_of(&t.tag).is_some());
    let mut order: Vec<(usize, &TagInfo)> = tags.iter().enumerate().collect();
    let by_version = |a: &TagInfo, b: &TagInfo| match (version_of(&a.tag), version_of(&b.tag)) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    if all_versions {
        order.sort_by(|(_, a), (_, b)| by_version(a, b).then_with(|| a.tag.cmp(&b.tag)));
    } else {
        order.sort_by(|(ia, a), (ib, b)| {
            let ka = a.created.as_deref().map(time_key);
            let kb = b.created.as_deref().map(time_key);
            kb.cmp(&ka)
                .then_with(|| by_version(a, b))
                .then_with(|| ib.cmp(ia))
        });
    }
    let mut keep: Vec<(String, KeepReason)> = Vec::new();
    let mut rest: Vec<&TagInfo> = Vec::new();
    for (i, (_, t)) in order.iter().enumerate() {
        let reason = if i < opts.keep {
            Some(KeepReason::Newest)
        } else if opts.protect.contains(&t.tag) {
            Some(KeepReason::Protected)
        } else if opts.running.contains(&t.digest) {
            Some(KeepReason::Running)
        } else {
            None
        };
        match reason {
            Some(r) => keep.push((t.tag.clone(), r)),
            None => rest.push(t),
        }
    }
    let kept_digests: BTreeSet<&str> = order
        .iter()
        .filter(|(_, t)| keep.iter().any(|(k, _)| *k == t.tag))
        .map(|(_, t)| t.digest.as_str())
        .collect();
    let mut delete = Vec::new();
    let mut digests: Vec<String> = Vec::new();
    for t in rest {
        if kept_digests.contains(t.digest.as_str()) {
            keep.push((t.tag.clone(), KeepReason::SharesDigest));
        } else {
            delete.push((t.tag.clone(), t.digest.clone()));
            if !digests.contains(&t.digest) {
                digests.push(t.digest.clone());
            }
        }
    }
    PrunePlan {
        order: if all_versions { "semver" } else { "push_time" },
        keep,
        delete,
        digests,
        applied: false,
    }
}

/// Reads the tags of `repository` (digest, and creation time when the order needs it).
pub async fn tag_infos(registry: &Registry, repository: &str) -> Result<Vec<TagInfo>, Error> {
    let tags = registry.tags(repository).await?;
    let conc = registry.concurrency() * 2;
    let digests: Vec<Result<String, Error>> = futures_util::stream::iter(tags.iter())
        .map(|t| registry.resolve_digest(repository, t))
        .buffered(conc)
        .collect()
        .await;
    let mut infos = Vec::with_capacity(tags.len());
    for (t, d) in tags.iter().zip(digests) {
        infos.push(TagInfo {
            tag: t.clone(),
            digest: d?,
            created: None,
        });
    }
    if infos.iter().all(|t| version_of(&t.tag).is_some()) {
        return Ok(infos);
    }
    let unique: BTreeSet<String> = infos.iter().map(|t| t.digest.clone()).collect();
    let created: Vec<(String, Option<String>)> = futures_util::stream::iter(unique)
        .map(|d| async move {
            let c = created_of(registry, repository, &d).await;
            (d, c)
        })
        .buffered(conc)
        .collect()
        .await;
    let created: HashMap<String, Option<String>> = created.into_iter().collect();
    for t in &mut infos {
        t.created = created.get(&t.digest).cloned().flatten();
    }
    Ok(infos)
}

/// The `created` of the image config behind manifest `digest` (None for indexes or odd manifests).
async fn created_of(registry: &Registry, repository: &str, digest: &str) -> Option<String> {
    let (bytes, _) = registry.manifest(repository, digest).await.ok()?;
    let m: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let config = m.get("config")?.get("digest")?.as_str()?;
    let blob = registry.blob(repository, config).await.ok()?;
    let c: serde_json::Value = serde_json::from_slice(&blob).ok()?;
    c.get("created")?.as_str().map(String::from)
}

/// Prunes `repository` per `opts`: plans, then (unless a dry run) deletes the manifests.
pub async fn prune(
    registry: &Registry,
    repository: &str,
    opts: &PruneOptions,
) -> Result<PrunePlan, Error> {
    crate::validate_repository(repository)?;
    registry.check(repository, !opts.dry_run).await?;
    let infos = tag_infos(registry, repository).await?;
    let mut p = plan(&infos, opts);
    if !opts.dry_run {
        for d in &p.digests {
            registry.delete_manifest(repository, d).await?;
        }
        p.applied = true;
    }
    Ok(p)
}
