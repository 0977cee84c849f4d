//! `davit-image`: `FROM scratch` images of one static binary, built in memory, with no engine and no
//! I/O. The lab pushes them to its registry as the demo images ([`StaticImage::registry_image`]); the
//! engine loads the proxy image on every host as a `docker save` archive ([`StaticImage::save_archive`]).
//!
//! **Architecture Invariant:** deterministic. The same binary and settings give the same bytes and
//! digests, so an image is pushed or loaded once and recognised by its digest afterwards.

use std::io::Write as _;

use sha2::{Digest as _, Sha256};

/// The media type of a Docker image manifest v2, schema 2.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// An image of one static binary at `/<name>`, which is its entrypoint.
#[derive(Debug, Clone, Default)]
pub struct StaticImage {
    /// The binary's file name inside the image (it lives at `/`).
    pub name: String,
    /// The binary's bytes.
    pub binary: Vec<u8>,
    /// `KEY=value` environment entries.
    pub env: Vec<String>,
    /// Arguments after the entrypoint.
    pub cmd: Vec<String>,
    /// Exposed TCP ports.
    pub exposed: Vec<u16>,
    /// A Docker healthcheck `["CMD", ...]`, with its interval in seconds.
    pub healthcheck: Option<(Vec<String>, u64)>,
    /// Who made it, for the image history (`davit-lab`, `davit`).
    pub creator: String,
}

/// The blobs and manifest of an image, ready to push to a registry.
#[derive(Debug, Clone)]
pub struct RegistryImage {
    pub layer: Vec<u8>,
    pub layer_digest: String,
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// The lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Appends one regular file (ustar header and data padded to 512 bytes) to a tar archive. Finish an
/// archive with [`tar_end`].
pub fn tar_entry(out: &mut Vec<u8>, path: &str, data: &[u8], mode: u32) {
    let mut h = [0u8; 512];
    let name = &path.as_bytes()[..path.len().min(100)];
    h[..name.len()].copy_from_slice(name);
    let oct = |field: &mut [u8], v: u64| {
        let s = format!("{:0width$o}\0", v, width = field.len() - 1);
        field.copy_from_slice(s.as_bytes());
    };
    oct(&mut h[100..108], u64::from(mode));
    oct(&mut h[108..116], 0);
    oct(&mut h[116..124], 0);
    oct(&mut h[124..136], data.len() as u64);
    oct(&mut h[136..148], 0);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// Ends a tar archive (two zero blocks).
pub fn tar_end(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0u8; 1024]);
}

/// True when `data` is an x86-64/aarch64 ELF executable without a program interpreter, i.e. one
/// that runs in an empty image.
pub fn is_static_elf(data: &[u8]) -> bool {
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(data[0x20..0x28].try_into().unwrap_or([0; 8])) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        data.get(o..o + 4)
            .map(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) != 3)
            .unwrap_or(false)
    })
}

impl StaticImage {
    /// The single layer, uncompressed: the binary at `/<name>`, mode 0755.
    pub fn layer_tar(&self) -> Vec<u8> {
        let mut tar = Vec::new();
        tar_entry(&mut tar, &self.name, &self.binary, 0o755);
        tar_end(&mut tar);
        tar
    }

    /// The image config for a layer whose uncompressed digest is `diff_id`.
    pub fn config(&self, diff_id: &str) -> Vec<u8> {
        let mut config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": self.env,
                "Entrypoint": [format!("/{}", self.name)],
                "Cmd": self.cmd,
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": format!("{}: COPY {} /", self.creator, self.name)}],
        });
        if !self.exposed.is_empty() {
            config["config"]["ExposedPorts"] = self
                .exposed
                .iter()
                .map(|p| (format!("{p}/tcp"), serde_json::json!({})))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        if let Some((test, interval)) = &self.healthcheck {
            config["config"]["Healthcheck"] = serde_json::json!({
                "Test": test,
                "Interval": interval * 1_000_000_000,
                "Timeout": 2_000_000_000u64,
                "Retries": 3,
            });
        }
        serde_json::to_vec(&config).unwrap_or_default()
    }

    /// The gzip layer, config and manifest (Docker image manifest v2, schema 2) for a registry.
    pub fn registry_image(&self) -> RegistryImage {
        let tar = self.layer_tar();
        let config = self.config(&sha256_digest(&tar));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        // Writing into a Vec cannot fail.
        let _ = gz.write_all(&tar);
        let layer = gz.finish().unwrap_or_default();
        let layer_digest = sha256_digest(&layer);
        let config_digest = sha256_digest(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": config.len(),
                "digest": config_digest,
            },
            "layers": [{
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": layer.len(),
                "digest": layer_digest,
            }],
        }))
        .unwrap_or_default();
        let manifest_digest = sha256_digest(&manifest);
        RegistryImage {
            layer,
            layer_digest,
            config,
            config_digest,
            manifest,
            manifest_digest,
        }
    }

    /// A `docker save` archive of the image, tagged `tag`, for the engine's image load API.
    pub fn save_archive(&self, tag: &str) -> Vec<u8> {
        let layer = self.layer_tar();
        let layer_hex = sha256_hex(&layer);
        let config = self.config(&format!("sha256:{layer_hex}"));
        let config_hex = sha256_hex(&config);
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": format!("{config_hex}.json"),
            "RepoTags": [tag],
            "Layers": [format!("{layer_hex}/layer.tar")],
        }]))
        .unwrap_or_default();
        let mut out = Vec::new();
        tar_entry(&mut out, &format!("{config_hex}.json"), &config, 0o644);
        tar_entry(&mut out, &format!("{layer_hex}/layer.tar"), &layer, 0o644);
        tar_entry(&mut out, "manifest.json", &manifest, 0o644);
        tar_end(&mut out);
        out
    }
}

#[cfg(test)]
mod tests;
