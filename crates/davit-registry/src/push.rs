//! Pushing an image from a Docker engine to a registry.
//!
//! Layers go up as the engine stores them (uncompressed tars), so a blob's digest is the engine's own
//! diff ID and the config's digest is the image ID: what the registry lacks is known from
//! `inspect` and a HEAD per blob, before anything is exported. An unchanged re-push is therefore an
//! inspect, a few HEADs and one manifest PUT per tag. Only when blobs are missing is the image exported
//! (`docker save` format, streamed), and only those blobs are sent, several at a time.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bollard::Docker;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use sha2::Digest as _;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::Error;
use crate::client::{ImageRef, Registry, validate_repository, validate_tag};
use crate::tarstream::TarStream;

/// The manifest media type davit pushes.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Bytes per progress step while uploading.
const CHUNK: usize = 1 << 20;

/// A push's progress, as it happens. The CLI draws bars from these; tests count uploads with them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Progress {
    /// The image's blobs (config and layers) are known.
    Planned { image: String, blobs: usize },
    /// The registry already holds this blob in the target repository: nothing sent.
    Present { digest: String, size: u64 },
    /// The blob was mounted from another repository of the same registry: nothing sent.
    Mounted { digest: String, from: String },
    /// The engine's export of the image began (some blobs are missing).
    Exporting,
    /// Upload of a missing blob began.
    UploadStarted { digest: String, size: u64 },
    /// Bytes of a blob handed to the connection so far.
    UploadProgress {
        digest: String,
        sent: u64,
        size: u64,
    },
    /// The registry accepted the blob.
    Uploaded { digest: String, size: u64 },
    /// The manifest is in the registry under this tag.
    Tagged { tag: String, digest: String },
}

/// Receives [`Progress`] events (from several tasks at once).
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How a blob got into the registry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobSource {
    Present,
    Mounted { from: String },
    Uploaded,
}

/// What to push.
#[derive(Clone, Default)]
pub struct PushOptions {
    /// Tags to put the manifest under (none: pushed by digest only).
    pub tags: Vec<String>,
    /// Repositories of the same registry to mount missing blobs from, besides those the image's own
    /// names (`RepoTags`, `RepoDigests`) point at.
    pub mount_from: Vec<String>,
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for PushOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushOptions")
            .field("tags", &self.tags)
            .field("mount_from", &self.mount_from)
            .finish()
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PushReport {
    /// `registry/repository`.
    pub repository: String,
    /// The manifest's digest: deploys pin `repository@digest`.
    pub digest: String,
    pub tags: Vec<String>,
    /// Every blob of the image (config first), its size and how it got there.
    pub blobs: Vec<(String, u64, BlobSource)>,
    /// Bytes sent in blob uploads.
    pub bytes_uploaded: u64,
}

impl PushReport {
    /// How many blobs were uploaded.
    pub fn uploaded(&self) -> usize {
        self.blobs
            .iter()
            .filter(|b| b.2 == BlobSource::Uploaded)
            .count()
    }

    /// How many blobs were mounted from another repository.
    pub fn mounted(&self) -> usize {
        self.blobs
            .iter()
            .filter(|b| matches!(b.2, BlobSource::Mounted { .. }))
            .count()
    }

    /// `registry/repository@digest`.
    pub fn pinned(&self) -> String {
        format!("{}@{}", self.repository, self.digest)
    }
}

fn emit(p: &Option<ProgressFn>, e: Progress) {
    if let Some(f) = p {
        f(&e);
    }
}

/// Pushes `image` (a name or ID the engine knows) from `docker` to `repository` of `registry`, under
/// every tag of `opts`. Blobs the repository holds are not sent; blobs another repository of the same
/// registry holds are mounted; the rest are exported from the engine and uploaded, several at a time.
pub async fn push_image(
    docker: &Docker,
    image: &str,
    registry: &Registry,
    repository: &str,
    opts: &PushOptions,
) -> Result<PushReport, Error> {
    validate_repository(repository)?;
    for t in &opts.tags {
        validate_tag(t)?;
    }
    let inspect = match docker.inspect_image(image).await {
        Ok(i) => i,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {
            return Err(Error::NoSuchImage {
                image: image.into(),
            });
        }
        Err(e) => return Err(Error::engine(format!("inspecting image {image}"), e)),
    };
    let config_digest = inspect.id.clone().ok_or_else(|| Error::Export {
        image: image.into(),
        what: "the engine gave no image ID".into(),
    })?;
    let layers: Vec<String> = inspect
        .root_fs
        .as_ref()
        .and_then(|r| r.layers.clone())
        .unwrap_or_default();
    for d in std::iter::once(&config_digest).chain(&layers) {
        if !d.starts_with("sha256:") || d.len() != 71 {
            return Err(Error::Export {
                image: image.into(),
                what: format!("unexpected digest {d}"),
            });
        }
    }

    // Refuse early: a wrong password or a dead registry must touch nothing.
    registry.check(repository, true).await?;

    let mut unique: Vec<String> = vec![config_digest.clone()];
    for l in &layers {
        if !unique.contains(l) {
            unique.push(l.clone());
        }
    }
    emit(
        &opts.progress,
        Progress::Planned {
            image: image.into(),
            blobs: unique.len(),
        },
    );

    // What the target repository already holds.
    let sizes = futures_util::future::try_join_all(
        unique.iter().map(|d| registry.blob_size(repository, d)),
    )
    .await?;
    let mut known: HashMap<String, (u64, BlobSource)> = HashMap::new();
    let mut missing: Vec<String> = Vec::new();
    for (d, s) in unique.iter().zip(sizes) {
        match s {
            Some(size) => {
                emit(
                    &opts.progress,
                    Progress::Present {
                        digest: d.clone(),
                        size,
                    },
                );
                known.insert(d.clone(), (size, BlobSource::Present));
            }
            None => missing.push(d.clone()),
        }
    }

    // Mount what other repositories of the same registry hold.
    if !missing.is_empty() {
        let sources = mount_sources(registry, repository, &inspect, &opts.mount_from);
        let oci_target = registry.reference(repository, "latest");
        registry
            .oci()
            .store_auth_if_needed(registry.host(), &registry.oci_auth())
            .await;
        let mut still = Vec::new();
        for d in missing {
            let mut done = false;
            for src in &sources {
                let Some(size) = registry.blob_size(src, &d).await? else {
                    continue;
                };
                let oci_src = registry.reference(src, "latest");
                match registry.oci().mount_blob(&oci_target, &oci_src, &d).await {
                    Ok(()) => {
                        emit(
                            &opts.progress,
                            Progress::Mounted {
                                digest: d.clone(),
                                from: src.clone(),
                            },
                        );
                        known.insert(d.clone(), (size, BlobSource::Mounted { from: src.clone() }));
                        done = true;
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(digest = %d, from = %src, error = %e, "mount refused, will upload")
                    }
                }
            }
            if !done {
                still.push(d);
            }
        }
        missing = still;
    }

    let mut bytes_uploaded = 0;
    if !missing.is_empty() {
        emit(&opts.progress, Progress::Exporting);
        let sent = upload_from_export(
            docker,
            image,
            &config_digest,
            registry,
            repository,
            &missing,
            &opts.progress,
        )
        .await?;
        for (d, size) in sent {
            bytes_uploaded += size;
            known.insert(d, (size, BlobSource::Uploaded));
        }
    }

    if let Some(d) = unique.iter().find(|d| !known.contains_key(*d)) {
        return Err(Error::Export {
            image: image.into(),
            what: format!("blob {d} did not reach the registry"),
        });
    }
    let size_of = |d: &String| known.get(d).map(|k| k.0).unwrap_or(0);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": size_of(&config_digest)},
        "layers": layers.iter().map(|l| serde_json::json!({"mediaType": OCI_LAYER_TAR, "digest": l, "size": size_of(l)})).collect::<Vec<_>>(),
    });
    let body = Bytes::from(serde_json::to_vec(&manifest).expect("manifest serializes"));
    let digest = crate::client::sha256_hex(&body);
    let targets: Vec<String> = if opts.tags.is_empty() {
        vec![digest.clone()]
    } else {
        opts.tags.clone()
    };
    let content_type = reqwest::header::HeaderValue::from_static(OCI_MANIFEST);
    futures_util::future::try_join_all(targets.iter().map(|t| {
        let r = registry.reference(repository, t);
        let body = body.clone();
        let ct = content_type.clone();
        let progress = opts.progress.clone();
        let digest = digest.clone();
        async move {
            registry
                .oci()
                .push_manifest_raw(&r, body, ct)
                .await
                .map_err(|e| {
                    registry.map_oci(&format!("pushing the manifest of {repository}:{t}"), e)
                })?;
            if !t.starts_with("sha256:") {
                emit(
                    &progress,
                    Progress::Tagged {
                        tag: t.clone(),
                        digest,
                    },
                );
            }
            Ok::<_, Error>(())
        }
    }))
    .await?;

    Ok(PushReport {
        repository: format!("{}/{}", registry.host(), repository),
        digest,
        tags: opts.tags.clone(),
        blobs: unique
            .iter()
            .map(|d| {
                let (size, src) = known.get(d).cloned().unwrap_or((0, BlobSource::Present));
                (d.clone(), size, src)
            })
            .collect(),
        bytes_uploaded,
    })
}

/// Other repositories of this registry that may hold the image's blobs.
fn mount_sources(
    registry: &Registry,
    target: &str,
    inspect: &bollard::models::ImageInspect,
    extra: &[String],
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let names = inspect
        .repo_tags
        .iter()
        .flatten()
        .chain(inspect.repo_digests.iter().flatten());
    for name in names {
        if let Ok(r) = ImageRef::parse(name)
            && r.registry == registry.host()
            && r.repository != target
            && !out.contains(&r.repository)
        {
            out.push(r.repository);
        }
    }
    for e in extra {
        if e != target && !out.contains(e) {
            out.push(e.clone());
        }
    }
    out
}

/// Streams the engine's export of `image` and uploads the blobs in `missing` as they come, up to
/// `registry.concurrency()` at a time. Returns each uploaded blob's digest and size.
async fn upload_from_export(
    docker: &Docker,
    image: &str,
    config_digest: &str,
    registry: &Registry,
    repository: &str,
    missing: &[String],
    progress: &Option<ProgressFn>,
) -> Result<Vec<(String, u64)>, Error> {
    let mut wanted: HashSet<String> = missing.iter().cloned().collect();
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    let config_hex = hex(config_digest);
    let sem = Arc::new(Semaphore::new(registry.concurrency()));
    let mut tasks: JoinSet<Result<(String, u64), Error>> = JoinSet::new();
    let mut out = Vec::new();
    let mut tar = TarStream::new(Box::pin(docker.export_image(config_digest)));
    let export_err =
        |e: bollard::errors::Error| Error::engine(format!("exporting image {image}"), e);

    while let Some(entry) = tar.next_entry().await.map_err(export_err)? {
        if wanted.is_empty() {
            break;
        }
        if entry.kind != b'0' && entry.kind != 0 {
            continue;
        }
        // OCI layout (Docker 25+): blobs/sha256/HEX; legacy: HEX.json (config), ID/layer.tar (layers).
        let named = entry
            .path
            .strip_prefix("blobs/sha256/")
            .map(String::from)
            .or_else(|| {
                entry
                    .path
                    .strip_suffix(".json")
                    .filter(|h| !h.contains('/'))
                    .map(String::from)
            });
        let is_layer_tar = entry.path.ends_with("/layer.tar");
        let interesting = match &named {
            Some(h) => wanted.contains(&format!("sha256:{h}")),
            None => is_layer_tar && wanted.iter().any(|w| hex(w) != config_hex),
        };
        if !interesting {
            continue;
        }
        // Hold a slot before reading the blob into memory, so at most `concurrency` blobs are in memory.
        let permit = sem.clone().acquire_owned().await.expect("semaphore open");
        // Reap finished uploads, surfacing errors early.
        while let Some(done) = tasks.try_join_next() {
            out.push(done.map_err(|e| Error::engine("upload task", e))??);
        }
        let mut data = BytesMut::with_capacity(entry.size as usize);
        let mut hasher = sha2::Sha256::new();
        tar.read_data(entry.size, |piece| {
            hasher.update(piece);
            data.extend_from_slice(piece);
        })
        .await
        .map_err(export_err)?;
        let digest = format!("sha256:{}", hex_of(&hasher.finalize()));
        if let Some(h) = &named
            && format!("sha256:{h}") != digest
        {
            return Err(Error::Export {
                image: image.into(),
                what: format!("{} does not match its digest", entry.path),
            });
        }
        if !wanted.remove(&digest) {
            continue;
        }
        let data = data.freeze();
        let reg = registry.clone();
        let repo = repository.to_string();
        let progress = progress.clone();
        tasks.spawn(async move {
            let _permit = permit;
            upload(&reg, &repo, &digest, data, &progress).await
        });
    }
    if let Some(d) = wanted.iter().next() {
        return Err(Error::Export {
            image: image.into(),
            what: format!("the export lacks blob {d}"),
        });
    }
    while let Some(done) = tasks.join_next().await {
        out.push(done.map_err(|e| Error::engine("upload task", e))??);
    }
    Ok(out)
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn upload(
    registry: &Registry,
    repository: &str,
    digest: &str,
    data: Bytes,
    progress: &Option<ProgressFn>,
) -> Result<(String, u64), Error> {
    let size = data.len() as u64;
    emit(
        progress,
        Progress::UploadStarted {
            digest: digest.into(),
            size,
        },
    );
    let mut chunks = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        chunks.push(rest.split_to(CHUNK.min(rest.len())));
    }
    let p = progress.clone();
    let d = digest.to_string();
    let mut sent = 0u64;
    let stream = futures_util::stream::iter(chunks).map(move |c| {
        sent += c.len() as u64;
        emit(
            &p,
            Progress::UploadProgress {
                digest: d.clone(),
                sent,
                size,
            },
        );
        Ok::<_, oci_client::errors::OciDistributionError>(c)
    });
    let r = registry.reference(repository, "latest");
    registry
        .oci()
        .store_auth_if_needed(registry.host(), &registry.oci_auth())
        .await;
    registry
        .oci()
        .push_blob_stream(&r, stream, digest, Some(size))
        .await
        .map_err(|e| registry.map_oci(&format!("uploading blob {digest} to {repository}"), e))?;
    emit(
        progress,
        Progress::Uploaded {
            digest: digest.into(),
            size,
        },
    );
    Ok((digest.to_string(), size))
}
