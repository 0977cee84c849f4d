use davit_registry::prune::KeepReason;
use davit_registry::{Error, PruneOptions, PushOptions, prune, push_image};

use crate::support::{lab_client, local_docker, make_image, unique};

/// Pushes one distinct image per tag into a fresh repository, in the given order.
async fn repo_with(tags: &[&str]) -> (davit_registry::Registry, String, Vec<(String, String)>) {
    let docker = local_docker().await;
    let (reg, _) = lab_client();
    let repo = unique("prune");
    let mut pushed = Vec::new();
    for t in tags {
        let local = format!("davit-registry-test/{}:{t}", unique("p"));
        make_image(&docker, &local, &unique(t)).await;
        let r = push_image(
            &docker,
            &local,
            &reg,
            &repo,
            &PushOptions {
                tags: vec![t.to_string()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
        pushed.push((t.to_string(), r.digest));
    }
    (reg, repo, pushed)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_keeps_the_newest_versions_by_semver() {
    // Pushed out of order on purpose: semver decides, not push time; 1.10.0 is above 1.9.0.
    let (reg, repo, pushed) = repo_with(&["1.10.0", "1.2.0", "1.9.0", "0.9.1"]).await;
    let dry = prune(
        &reg,
        &repo,
        &PruneOptions {
            keep: 2,
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(dry.order, "semver");
    assert!(!dry.applied);
    assert_eq!(
        sorted(reg.tags(&repo).await.unwrap()).len(),
        4,
        "a dry run deletes nothing"
    );

    let p = prune(
        &reg,
        &repo,
        &PruneOptions {
            keep: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        p.keep,
        vec![
            ("1.10.0".into(), KeepReason::Newest),
            ("1.9.0".into(), KeepReason::Newest)
        ]
    );
    assert_eq!(
        p.delete.iter().map(|d| d.0.as_str()).collect::<Vec<_>>(),
        ["1.2.0", "0.9.1"]
    );
    assert_eq!(
        p,
        davit_registry::PrunePlan {
            applied: true,
            ..dry
        },
        "the dry run said exactly this"
    );
    assert_eq!(sorted(reg.tags(&repo).await.unwrap()), ["1.10.0", "1.9.0"]);
    // The manifests are gone, not just the tags.
    let gone = &pushed.iter().find(|p| p.0 == "1.2.0").unwrap().1;
    let err = reg.manifest(&repo, gone).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_never_deletes_protected_or_running_tags() {
    let (reg, repo, pushed) = repo_with(&["1.0.0", "1.1.0", "1.2.0", "1.3.0"]).await;
    let running = pushed.iter().find(|p| p.0 == "1.0.0").unwrap().1.clone();
    let opts = PruneOptions {
        keep: 1,
        protect: vec!["1.1.0".into()],
        running: vec![running],
        dry_run: false,
    };
    let p = prune(&reg, &repo, &opts).await.unwrap();
    assert_eq!(
        p.delete.iter().map(|d| d.0.as_str()).collect::<Vec<_>>(),
        ["1.2.0"]
    );
    assert_eq!(
        sorted(reg.tags(&repo).await.unwrap()),
        ["1.0.0", "1.1.0", "1.3.0"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_orders_non_version_tags_by_push_time() {
    let (reg, repo, _) = repo_with(&["old", "middle", "new"]).await;
    let p = prune(
        &reg,
        &repo,
        &PruneOptions {
            keep: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(p.order, "push_time");
    assert_eq!(reg.tags(&repo).await.unwrap(), ["new"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_removes_the_manifest_and_its_tags() {
    let (reg, repo, pushed) = repo_with(&["a", "b"]).await;
    let (tag, digest) = &pushed[0];
    reg.delete_manifest(&repo, digest).await.unwrap();
    let err = reg.resolve_digest(&repo, tag).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert_eq!(reg.tags(&repo).await.unwrap(), ["b"]);
    let again = reg.delete_manifest(&repo, digest).await.unwrap_err();
    assert!(matches!(again, Error::NotFound { .. }), "{again:?}");
}
