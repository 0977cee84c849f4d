//! `FROM scratch` images made in memory from one static binary, and a minimal push of them to the lab
//! registry (plain HTTP, distribution API). Deterministic: the same binary gives the same digests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::Error;

/// An image of one static binary at `/<name>`.
#[derive(Debug, Clone)]
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
    /// A Docker healthcheck `["CMD", ...]`, with interval seconds.
    pub healthcheck: Option<(Vec<String>, u64)>,
}

/// The blobs and manifest of an image, ready to push.
#[derive(Debug, Clone)]
pub struct Built {
    pub layer: Vec<u8>,
    pub layer_digest: String,
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

pub(crate) fn sha256(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    let mut s = String::from("sha256:");
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// One file in a ustar archive.
pub(crate) fn tar_one(path: &str, data: &[u8], mode: u32) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..path.len()].copy_from_slice(path.as_bytes());
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
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

impl StaticImage {
    /// Builds the layer, config and manifest (Docker image manifest v2, schema 2).
    pub fn build(&self) -> Built {
        let tar = tar_one(&self.name, &self.binary, 0o755);
        let diff_id = sha256(&tar);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).expect("writing to memory");
        let layer = gz.finish().expect("writing to memory");
        let layer_digest = sha256(&layer);
        let mut config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": self.env,
                "Entrypoint": [format!("/{}", self.name)],
                "Cmd": self.cmd,
                "ExposedPorts": self.exposed.iter()
                    .map(|p| (format!("{p}/tcp"), serde_json::json!({})))
                    .collect::<serde_json::Map<_, _>>(),
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": format!("davit-lab: COPY {} /", self.name)}],
        });
        if let Some((test, interval)) = &self.healthcheck {
            config["config"]["Healthcheck"] = serde_json::json!({
                "Test": test,
                "Interval": interval * 1_000_000_000,
                "Timeout": 2_000_000_000u64,
                "Retries": 3,
            });
        }
        let config = serde_json::to_vec(&config).expect("json");
        let config_digest = sha256(&config);
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
        .expect("json");
        let manifest_digest = sha256(&manifest);
        Built {
            layer,
            layer_digest,
            config,
            config_digest,
            manifest,
            manifest_digest,
        }
    }
}

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// A registry answer: status, lower-cased headers, body.
pub(crate) type Reply = (u16, Vec<(String, String)>, Vec<u8>);

/// A bare HTTP/1.1 exchange with the registry; returns (status, headers, body).
pub(crate) fn http(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, Error> {
    let fail = |message: String| Error::Registry {
        address: address.to_string(),
        message,
    };
    let mut s = TcpStream::connect(address).map_err(|e| fail(format!("connect: {e}")))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .and_then(|_| s.write_all(body))
        .map_err(|e| fail(format!("send: {e}")))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| fail(format!("read: {e}")))?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| fail("malformed response".into()))?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status =
        crate::sys::parse_status(head.as_bytes()).ok_or_else(|| fail("malformed status".into()))?;
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers, buf[split + 4..].to_vec()))
}

fn push_blob(address: &str, repo: &str, digest: &str, data: &[u8]) -> Result<(), Error> {
    let fail = |message: String| Error::Registry {
        address: address.to_string(),
        message,
    };
    let (status, _, _) = http(
        address,
        "HEAD",
        &format!("/v2/{repo}/blobs/{digest}"),
        &[],
        &[],
    )?;
    if status == 200 {
        return Ok(());
    }
    let (status, headers, _) = http(
        address,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        &[],
        &[],
    )?;
    if status != 202 {
        return Err(fail(format!("starting an upload answered {status}")));
    }
    let location = headers
        .iter()
        .find(|(k, _)| k == "location")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| fail("upload without a Location".into()))?;
    let location = match location.find("/v2/") {
        Some(i) => location[i..].to_string(),
        None => location,
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let (status, _, body) = http(
        address,
        "PUT",
        &format!("{location}{sep}digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        data,
    )?;
    if status != 201 {
        return Err(fail(format!(
            "uploading {digest} answered {status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    Ok(())
}

/// Pushes the image as `repo:tag`, sending only what the registry lacks. Returns the manifest digest.
pub fn push(address: &str, repo: &str, tag: &str, image: &StaticImage) -> Result<String, Error> {
    let built = image.build();
    push_built(address, repo, tag, &built)?;
    Ok(built.manifest_digest)
}

pub(crate) fn push_built(address: &str, repo: &str, tag: &str, built: &Built) -> Result<(), Error> {
    push_blob(address, repo, &built.layer_digest, &built.layer)?;
    push_blob(address, repo, &built.config_digest, &built.config)?;
    let (status, _, body) = http(
        address,
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", MANIFEST_MEDIA_TYPE)],
        &built.manifest,
    )?;
    if status != 201 {
        return Err(Error::Registry {
            address: address.to_string(),
            message: format!(
                "putting manifest {repo}:{tag} answered {status}: {}",
                String::from_utf8_lossy(&body)
            ),
        });
    }
    Ok(())
}
