//! Property tests: the interpolation, dotenv and YAML loader code never panics, only errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use davit_compose::{LoadOptions, Loader, interpolate, load, parse_dotenv};
use proptest::prelude::*;

struct Mem(BTreeMap<PathBuf, String>);

impl Loader for Mem {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }
}

fn lookup(k: &str) -> Option<String> {
    k.len().is_multiple_of(2).then(|| k.to_lowercase())
}

proptest! {
    #[test]
    fn interpolation_never_panics(s in "[a-zA-Z0-9_${}:?+\\-. ]{0,40}") {
        let _ = interpolate(&s, &lookup);
    }

    #[test]
    fn dotenv_never_panics(s in "(export )?[A-Za-z_ =:#'\"\\\\$\\n{}.-]{0,60}") {
        let _ = parse_dotenv(&s, &lookup);
    }

    #[test]
    fn loader_never_panics(s in "(services:\n  [a-z]{1,3}:\n    )?[a-z_:\\-\\[\\]{}&*<!\\n \"'0-9$.]{0,80}") {
        let mut files = BTreeMap::new();
        files.insert(PathBuf::from("/p/compose.yaml"), s);
        let opts = LoadOptions::new("/p").with_file("compose.yaml");
        let _ = load(&opts, &Mem(files));
    }
}

proptest! {
    #[test]
    fn normalisation_never_panics(
        port in "[0-9:/.a-z\\-\\[\\]]{0,20}",
        volume in "[0-9:/.a-z~,\\-]{0,24}",
        duration in "[0-9a-z.]{0,8}",
        size in "[0-9a-zA-Z.]{0,6}",
        dep in "[a-c]{1,2}",
        cmd in "[a-z '\"\\\\$]{0,20}",
    ) {
        let yaml = format!(
            "services:\n  a:\n    image: x\n    ports: [{port:?}]\n    volumes: [{volume:?}]\n    healthcheck: {{interval: {duration:?}}}\n    mem_limit: {size:?}\n    depends_on: [{dep}]\n    command: {cmd:?}\n    devices: [{volume:?}]\n    extra_hosts: [{port:?}]\n  b:\n    image: y\n    depends_on: [a]\n"
        );
        let mut files = BTreeMap::new();
        files.insert(PathBuf::from("/p/compose.yaml"), yaml);
        let opts = LoadOptions::new("/p").with_file("compose.yaml");
        if let Ok(p) = load(&opts, &Mem(files)) {
            let _ = p.config_json();
            let _ = p.to_yaml_string();
        }
    }
}
