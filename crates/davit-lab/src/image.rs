//! A minimal push of `FROM scratch` images (built in memory by `davit-image`) to the lab registry
//! (plain HTTP, distribution API).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub use davit_image::{MANIFEST_MEDIA_TYPE, RegistryImage as Built, StaticImage};

use crate::Error;

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
    let built = image.registry_image();
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
