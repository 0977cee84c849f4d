use std::collections::BTreeMap;

use davit_registry::build::{BuildSpec, build_all};

use crate::support::{local_docker, unique};

#[tokio::test(flavor = "multi_thread")]
async fn builds_a_two_service_project_with_args_and_target() {
    let docker = local_docker().await;
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web");
    let worker = dir.path().join("worker");
    std::fs::create_dir_all(web.join("ignored")).unwrap();
    std::fs::create_dir_all(&worker).unwrap();
    std::fs::copy("/bin/busybox", web.join("busybox")).unwrap();
    std::fs::write(web.join("ignored/big"), "must not be sent").unwrap();
    std::fs::write(web.join(".dockerignore"), "ignored\n").unwrap();
    // The build fails if the ignored directory reached the engine.
    std::fs::write(
        web.join("Dockerfile"),
        "FROM scratch AS base\nARG GREETING\nCOPY busybox /bin/busybox\nLABEL greeting=$GREETING stage=base\n\
         FROM base AS prod\nLABEL stage=prod\n\
         FROM base AS debug\nCOPY ignored/big /big\nLABEL stage=debug\n",
    )
    .unwrap();
    std::fs::write(worker.join("data"), "worker").unwrap();
    // A Dockerfile outside the context, as compose allows.
    std::fs::write(
        dir.path().join("worker.Dockerfile"),
        "FROM scratch\nCOPY data /data\nLABEL role=worker\n",
    )
    .unwrap();

    let name = unique("build");
    let specs = vec![
        BuildSpec {
            name: "web".into(),
            context: web,
            dockerfile: None,
            args: BTreeMap::from([("GREETING".into(), "hello".into())]),
            target: Some("prod".into()),
            tags: vec![
                format!("davit-registry-test/{name}-web:latest"),
                format!("davit-registry-test/{name}-web:0123abc"),
            ],
        },
        BuildSpec {
            name: "worker".into(),
            context: worker,
            dockerfile: Some(dir.path().join("worker.Dockerfile")),
            tags: vec![format!("davit-registry-test/{name}-worker:latest")],
            ..Default::default()
        },
    ];
    let built = build_all(&docker, &specs, 2).await.expect("build");
    assert_eq!(built.len(), 2);
    let web = docker.inspect_image(&specs[0].tags[1]).await.unwrap();
    assert_eq!(
        web.id.as_deref(),
        Some(built[0].image_id.as_str()),
        "every tag points at the build"
    );
    let labels = web.config.unwrap().labels.unwrap();
    assert_eq!(labels.get("greeting").map(String::as_str), Some("hello"));
    assert_eq!(labels.get("stage").map(String::as_str), Some("prod"));
    let worker = docker.inspect_image(&specs[1].tags[0]).await.unwrap();
    assert_eq!(
        worker
            .config
            .unwrap()
            .labels
            .unwrap()
            .get("role")
            .map(String::as_str),
        Some("worker")
    );

    // The debug stage needs the ignored file: it is not in the context, so that build fails, clearly.
    let mut debug = specs[0].clone();
    debug.target = Some("debug".into());
    let err = build_all(&docker, &[debug], 1).await.unwrap_err();
    assert!(err.to_string().contains("build of web failed"), "{err}");
}
