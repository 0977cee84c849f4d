use super::*;

fn image(version: &str) -> StaticImage {
    StaticImage {
        name: "app".into(),
        binary: b"\x7fELF bytes".to_vec(),
        env: vec![format!("VERSION={version}")],
        exposed: vec![8080],
        healthcheck: Some((vec!["CMD".into(), "/app".into(), "check".into()], 2)),
        creator: "test".into(),
        ..StaticImage::default()
    }
}

/// Walks a tar archive: (name, data) per entry.
fn entries(tar: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 512 <= tar.len() && tar[off] != 0 {
        let name = String::from_utf8_lossy(&tar[off..off + 100])
            .trim_end_matches('\0')
            .to_string();
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&tar[off + 124..off + 135]).trim(),
            8,
        )
        .unwrap();
        out.push((name, tar[off + 512..off + 512 + size].to_vec()));
        off += 512 + size.div_ceil(512) * 512;
    }
    out
}

#[test]
fn tar_header_checksum_is_valid() {
    let mut t = Vec::new();
    tar_entry(&mut t, "hello", b"abc", 0o755);
    tar_end(&mut t);
    assert_eq!(t.len(), 512 + 512 + 1024);
    let mut h = t[..512].to_vec();
    let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
    h[148..156].copy_from_slice(b"        ");
    assert_eq!(stored, h.iter().map(|&b| u32::from(b)).sum::<u32>());
    assert_eq!(&t[512..515], b"abc");
    assert_eq!(&t[124..135], b"00000000003");
    assert_eq!(&t[100..107], b"0000755");
}

#[test]
fn registry_images_are_deterministic_and_share_their_layer() {
    let a = image("v1").registry_image();
    let b = image("v1").registry_image();
    let c = image("v2").registry_image();
    assert_eq!(a.manifest_digest, b.manifest_digest);
    assert_eq!(a.layer_digest, c.layer_digest, "versions share their layer");
    assert_ne!(a.config_digest, c.config_digest);
    assert_eq!(a.manifest_digest, sha256_digest(&a.manifest));
    let manifest: serde_json::Value = serde_json::from_slice(&a.manifest).unwrap();
    assert_eq!(manifest["config"]["digest"], a.config_digest.as_str());
    assert_eq!(manifest["layers"][0]["size"], a.layer.len());
    let config: serde_json::Value = serde_json::from_slice(&c.config).unwrap();
    assert_eq!(config["config"]["Env"][0], "VERSION=v2");
    assert_eq!(config["config"]["Entrypoint"][0], "/app");
    assert!(config["config"]["ExposedPorts"]["8080/tcp"].is_object());
    assert_eq!(
        config["config"]["Healthcheck"]["Interval"],
        2_000_000_000u64
    );
    // The config names the uncompressed layer.
    let mut gz = flate2::read::GzDecoder::new(&a.layer[..]);
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut gz, &mut tar).unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        sha256_digest(&tar).as_str()
    );
}

#[test]
fn save_archive_holds_config_layer_and_manifest() {
    let img = image("v1");
    let tar = img.save_archive("app:test");
    assert_eq!(tar.len() % 512, 0);
    let e = entries(&tar);
    let names: Vec<&str> = e.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names[0].ends_with(".json") && names[1].ends_with("/layer.tar"));
    assert_eq!(names[2], "manifest.json");
    let manifest: serde_json::Value = serde_json::from_slice(&e[2].1).unwrap();
    assert_eq!(manifest[0]["RepoTags"][0], "app:test");
    assert_eq!(manifest[0]["Config"], names[0]);
    // The layer holds the binary; the config file is named by its digest.
    let layer = entries(&e[1].1);
    assert_eq!(layer, vec![("app".to_string(), img.binary.clone())]);
    assert_eq!(format!("{}.json", sha256_hex(&e[0].1)), names[0]);
    assert_eq!(tar, img.save_archive("app:test"), "deterministic");
}

#[test]
fn static_elf_detection() {
    let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    assert!(!is_static_elf(&me), "test binaries link dynamically");
    assert!(!is_static_elf(b"#!/bin/sh\n"));
    assert!(!is_static_elf(&[]));
}
