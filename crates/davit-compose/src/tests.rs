use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{LoadOptions, Loader, Strategy, interpolate, load, parse_dotenv};

fn env(k: &str) -> Option<String> {
    match k {
        "A" => Some("a".into()),
        "E" => Some(String::new()),
        _ => None,
    }
}

#[test]
fn interpolation_forms() {
    let cases = [
        ("$A", "a"),
        ("${A}", "a"),
        ("${U:-d}", "d"),
        ("${E:-d}", "d"),
        ("${E-d}", ""),
        ("${U-d}", "d"),
        ("${A:+r}", "r"),
        ("${E:+r}", ""),
        ("${E+r}", "r"),
        ("${U+r}", ""),
        ("$$A", "$A"),
        ("${U:-${A}x}", "ax"),
        ("x${A}y$A", "xaya"),
        ("${A?boom}", "a"),
    ];
    for (t, want) in cases {
        assert_eq!(interpolate(t, &env).unwrap(), want, "{t}");
    }
    let e = interpolate("${U:?boom}", &env).unwrap_err();
    assert!(
        e.message.contains("boom") && e.variable.as_deref() == Some("U"),
        "{e}"
    );
    assert!(interpolate("${E:?empty}", &env).is_err());
    assert!(interpolate("${E?empty}", &env).is_ok());
    assert_eq!(interpolate("$1 cost 5$", &env).unwrap(), "$1 cost 5$");
    assert!(interpolate("${A", &env).is_err());
    assert!(interpolate("${A:x}", &env).is_err());
}

#[test]
fn dotenv_rules() {
    let src = "\u{feff}# c\nexport A=1\nB = two # comment\nC='raw $A'\nD=\"x\\ny $A\"\nE=${A}-${NOPE:-d}\nF=a#b\nG:yaml\nHOME\n";
    let lookup = |k: &str| (k == "HOME").then(|| "/root".to_owned());
    let got = parse_dotenv(src, &lookup).unwrap();
    let want: Vec<(&str, &str)> = vec![
        ("A", "1"),
        ("B", "two"),
        ("C", "raw $A"),
        ("D", "x\ny 1"),
        ("E", "1-d"),
        ("F", "a#b"),
        ("G", "yaml"),
        ("HOME", "/root"),
    ];
    let got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(got, want);
    assert_eq!(parse_dotenv("A B=1\n", &lookup).unwrap_err().line, 1);
    assert_eq!(parse_dotenv("\nA=\"open\n", &lookup).unwrap_err().line, 2);
}

struct Mem(BTreeMap<PathBuf, String>);

impl Loader for Mem {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }
}

fn load_str(yaml: &str) -> Result<crate::Project, crate::Diagnostics> {
    let mut files = BTreeMap::new();
    files.insert(PathBuf::from("/srv/app/compose.yaml"), yaml.to_owned());
    load(&LoadOptions::new("/srv/app"), &Mem(files))
}

#[test]
fn typed_model_in_dependency_order_with_davit_extension() {
    let p = load_str(
        r#"
services:
  web:
    image: reg:5000/app:v2
    depends_on:
      api: {condition: service_healthy}
    x-davit:
      proxy: {port: 8080, health: /health}
    deploy:
      replicas: 3
      update_config: {parallelism: 1, delay: 5s, order: start-first}
  api:
    image: api
    depends_on: [db]
    healthcheck: {test: curl -f localhost, interval: 1m30s, retries: 2}
    x-davit: {strategy: blue-green}
  db:
    image: postgres
x-davit:
  environments:
    production: {hosts: ["ssh://root@10.0.0.1"], variables: {VERSION: "2"}}
  hooks:
    pre-deploy: ./check.sh "$$DAVIT_RELEASE"
    post-deploy: [./notify, --done]
"#,
    )
    .unwrap();
    let names: Vec<&str> = p.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["db", "api", "web"]);
    let web = p.service("web").unwrap();
    let proxy = web.davit.proxy.as_ref().unwrap();
    assert_eq!(
        (proxy.port, proxy.health.as_str(), proxy.publish),
        (8080, "/health", 80)
    );
    assert_eq!(web.davit.strategy, Strategy::Rolling);
    assert_eq!(web.replicas, 3);
    let uc = web.update_config.as_ref().unwrap();
    assert_eq!(uc.delay, Some(std::time::Duration::from_secs(5)));
    assert_eq!(uc.order.as_deref(), Some("start-first"));
    let api = p.service("api").unwrap();
    assert_eq!(api.davit.strategy, Strategy::BlueGreen);
    let hc = api.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test, ["CMD-SHELL", "curl -f localhost"]);
    assert_eq!(hc.interval, Some(std::time::Duration::from_secs(90)));
    assert_eq!(p.service("db").unwrap().davit.strategy, Strategy::Recreate);
    assert_eq!(p.environments["production"].hosts, ["ssh://root@10.0.0.1"]);
    assert_eq!(p.environments["production"].variables["VERSION"], "2");
    assert_eq!(
        p.hooks.pre_deploy.as_deref(),
        Some(
            &[
                "sh".to_string(),
                "-c".into(),
                "./check.sh \"$DAVIT_RELEASE\"".into()
            ][..]
        )
    );
    assert_eq!(
        p.hooks.post_deploy.as_deref(),
        Some(&["./notify".to_string(), "--done".into()][..])
    );
    assert_eq!(p.name, "app");
    // x-davit stays out of the Compose document (Compose drops service extensions in its JSON).
    assert!(p.to_json()["services"]["web"].get("x-davit").is_none());
}

#[test]
fn invalid_davit_extension_is_reported() {
    let e = load_str("services:\n  web:\n    image: x\n    x-davit:\n      proxy: {port: 0, health: nope}\n      strategy: yolo\n")
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("proxy.port"), "{text}");
    assert!(text.contains("unknown strategy"), "{text}");
    // Each problem at its place in the file.
    let got: Vec<(usize, usize)> = e.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(got, [(5, 21), (5, 32), (6, 17)], "{text}");
    let e = load_str(
        "services:\n  web:\n    image: x\nx-davit:\n  hooks:\n    pre-deploy: []\n    after: x\n",
    )
    .unwrap_err();
    let got: Vec<(usize, usize)> = e.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(got, [(6, 17), (7, 5)], "{e}");
    assert!(e.to_string().contains("unknown hook"), "{e}");
}

#[test]
fn every_problem_is_reported_with_its_position() {
    let e = load_str("services:\n  a:\n    image: x\n    imag: y\n  b:\n    image: [1]\n    ports: [{target: 80, bogus: 1}]\n")
        .unwrap_err();
    let got: Vec<(usize, usize)> = e.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(got, [(4, 5), (6, 12), (7, 26)], "{e}");
    assert!(
        e.iter()
            .next()
            .unwrap()
            .hint
            .as_deref()
            .unwrap()
            .contains("image"),
        "{e}"
    );
}

#[test]
fn yaml_bombs_are_refused() {
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
            p = i - 1
        ));
    }
    bomb.push_str("services: {}\n");
    let e = load_str(&bomb).unwrap_err();
    assert!(e.to_string().contains("alias expansion"), "{e}");
}

#[test]
fn merge_keys_and_anchors() {
    let p = load_str("x-b: &b\n  image: base\n  restart: always\nservices:\n  s:\n    <<: *b\n    restart: 'no'\n").unwrap();
    let s = p.service("s").unwrap();
    assert_eq!(s.image.as_deref(), Some("base"));
    assert_eq!(s.restart.as_deref(), Some("no"));
}

/// Loads `yaml` as `/srv/app/compose.yaml` and snapshots the document `davit config` prints.
fn check(name: &str, yaml: &str) {
    let text = match load_str(yaml) {
        Ok(p) => p.config_json().unwrap_or_else(|e| format!("error: {e}")),
        Err(d) => format!("error: {d}"),
    };
    insta::assert_snapshot!(name, text);
}

#[test]
fn canonical_documents() {
    check(
        "short_syntax",
        "services:\n  web:\n    image: nginx\n    ports: [\"127.0.0.1:8080-8081:80-81/udp\", 9000]\n    volumes: [\"./html:/usr/share/nginx/html:ro\", \"cache:/cache\", /tmp/anon]\n    environment: [A=1, B]\n    command: nginx -g 'daemon off;'\n    depends_on: [db]\n    healthcheck: {test: curl -f localhost, interval: 90s}\n  db:\n    image: postgres\n    deploy: {resources: {limits: {memory: 1g, cpus: '0.5'}}}\nvolumes:\n  cache: {}\n  unused: {}\n",
    );
    check(
        "escaped_dollars_and_defaults",
        "name: demo\nservices:\n  s:\n    image: ${IMAGE:-busybox}:${TAG-latest}\n    command: echo $$HOME\n    labels: {price: \"$$5\"}\n",
    );
    check(
        "errors_everywhere",
        "services:\n  s:\n    image: x\n    restart: [no]\n    depends_on: [ghost]\n    healthcheck: {interval: soon}\n",
    );
}

#[test]
fn unset_variables_are_warnings_not_errors() {
    let p =
        load_str("services:\n  s:\n    image: x${UNSET_A}\n    command: ${UNSET_B:-ok}\n").unwrap();
    let w: Vec<(usize, &str)> = p
        .warnings
        .iter()
        .map(|d| (d.line, d.message.as_str()))
        .collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].0, 3);
    assert!(w[0].1.contains("UNSET_A"), "{w:?}");
    assert_eq!(
        p.service("s").unwrap().command.as_deref(),
        Some(&["ok".to_owned()][..])
    );
}
