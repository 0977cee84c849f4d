//! Shared setup: the lab registry, the local engine, throwaway images.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::Docker;
use davit_registry::{Progress, ProgressFn, Registry, Settings};
use futures_util::StreamExt;

pub const INSTANCE: u8 = 5;

/// The lab registry address (brought up once per test binary).
pub fn lab_registry() -> String {
    let (_lab, info) = davit_lab::for_tests(INSTANCE, 1);
    info.registry.expect("the lab has a registry")
}

/// The docker_host URL of lab host 1.
pub fn lab_host_engine() -> String {
    let (_lab, info) = davit_lab::for_tests(INSTANCE, 1);
    info.hosts[0].docker_host.clone()
}

/// A client for the lab registry (plain HTTP because it is named insecure, as users must).
pub fn lab_client() -> (Registry, String) {
    let reg = lab_registry();
    let settings = Settings {
        insecure: vec!["10.77.0.0/16".into()],
        ..Settings::default()
    };
    (Registry::new(&reg, &settings).expect("client"), reg)
}

pub async fn local_docker() -> Docker {
    Docker::connect_with_local_defaults()
        .expect("local docker")
        .negotiate_version()
        .await
        .expect("the local Docker engine answers (is dockerd running?)")
}

/// A name nobody else uses: tests and runs never share repositories.
pub fn unique(prefix: &str) -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{n}", std::process::id())
}

/// A tar holding the given files.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Builds `FROM scratch` + static busybox + a file with `content` in the local engine, tagged `tag`.
/// Two layers: busybox (shared by every such image) and the file (unique per content).
pub async fn make_image(docker: &Docker, tag: &str, content: &str) -> String {
    let busybox =
        std::fs::read("/bin/busybox").expect("/bin/busybox (apt-get install busybox-static)");
    let dockerfile = b"FROM scratch\nCOPY busybox /bin/busybox\nCOPY data /data\nCMD [\"/bin/busybox\", \"cat\", \"/data\"]\n";
    let ctx = tar_of(&[
        ("Dockerfile", dockerfile),
        ("busybox", &busybox),
        ("data", content.as_bytes()),
    ]);
    let opts = bollard::query_parameters::BuildImageOptions {
        t: Some(tag.into()),
        rm: true,
        ..Default::default()
    };
    let mut s = docker.build_image(opts, None, Some(bollard::body_full(ctx.into())));
    while let Some(item) = s.next().await {
        let info = item.expect("build");
        assert!(
            info.error_detail.is_none(),
            "build failed: {:?}",
            info.error_detail
        );
    }
    docker
        .inspect_image(tag)
        .await
        .expect("built image")
        .id
        .unwrap()
}

/// Collects progress events.
#[derive(Clone, Default)]
pub struct Events(pub Arc<Mutex<Vec<Progress>>>);

impl Events {
    pub fn sink(&self) -> ProgressFn {
        let v = self.0.clone();
        Arc::new(move |p: &Progress| v.lock().unwrap().push(p.clone()))
    }

    pub fn uploads(&self) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|p| matches!(p, Progress::UploadStarted { .. }))
            .count()
    }

    pub fn mounts(&self) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|p| matches!(p, Progress::Mounted { .. }))
            .count()
    }

    pub fn tagged(&self) -> Vec<String> {
        let mut t: Vec<String> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|p| match p {
                Progress::Tagged { tag, .. } => Some(tag.clone()),
                _ => None,
            })
            .collect();
        t.sort();
        t
    }
}
