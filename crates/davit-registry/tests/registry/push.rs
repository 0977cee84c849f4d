use davit_registry::{BlobSource, Error, PushOptions, push_image};
use futures_util::StreamExt;

use crate::support::{Events, lab_client, lab_host_engine, local_docker, make_image, unique};

#[tokio::test(flavor = "multi_thread")]
async fn push_under_four_tags_then_an_unchanged_repush_sends_no_blob() {
    let docker = local_docker().await;
    let (reg, host) = lab_client();
    let content = unique("content");
    let local_tag = format!("davit-registry-test/{}:1", unique("img"));
    let id = make_image(&docker, &local_tag, &content).await;
    let repo = unique("push");
    let tags: Vec<String> = ["1.0.0", "latest", "0123456789ab", "staging"]
        .map(String::from)
        .to_vec();

    let events = Events::default();
    let opts = PushOptions {
        tags: tags.clone(),
        progress: Some(events.sink()),
        ..Default::default()
    };
    let first = push_image(&docker, &local_tag, &reg, &repo, &opts)
        .await
        .expect("first push");
    // config + busybox layer + data layer: all new in this repository, all uploaded.
    assert_eq!(first.blobs.len(), 3, "{first:?}");
    assert_eq!(first.uploaded(), 3, "{first:?}");
    assert_eq!(events.uploads(), 3);
    assert_eq!(first.blobs[0].0, id, "the config blob is the image ID");
    let mut want = tags.clone();
    want.sort();
    assert_eq!(events.tagged(), want);

    let mut listed = reg.tags(&repo).await.expect("tags");
    listed.sort();
    assert_eq!(listed, want);
    for t in &tags {
        assert_eq!(
            reg.resolve_digest(&repo, t).await.unwrap(),
            first.digest,
            "tag {t}"
        );
    }
    // The free function the engine calls, with settings from a reference.
    let settings = davit_registry::Settings {
        insecure: vec![host.clone()],
        ..Default::default()
    };
    let pinned = davit_registry::Registry::resolve(&format!("{host}/{repo}:staging"), &settings)
        .await
        .unwrap();
    assert_eq!(pinned, first.digest);

    let again = Events::default();
    let opts2 = PushOptions {
        tags: tags.clone(),
        progress: Some(again.sink()),
        ..Default::default()
    };
    let second = push_image(&docker, &local_tag, &reg, &repo, &opts2)
        .await
        .expect("second push");
    assert_eq!(again.uploads(), 0, "an unchanged re-push sends no blob");
    assert_eq!(second.uploaded(), 0);
    assert_eq!(second.bytes_uploaded, 0);
    assert!(second.blobs.iter().all(|b| b.2 == BlobSource::Present));
    assert_eq!(second.digest, first.digest, "same image, same manifest");

    // A lab host's engine pulls it by digest, and gets the very image we pushed.
    let url = lab_host_engine();
    let path = url.strip_prefix("unix://").unwrap();
    let remote = bollard::Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    let by_digest = format!("{host}/{repo}@{}", first.digest);
    let opts = bollard::query_parameters::CreateImageOptions {
        from_image: Some(by_digest.clone()),
        ..Default::default()
    };
    let mut pull = remote.create_image(Some(opts), None, None);
    while let Some(item) = pull.next().await {
        item.unwrap_or_else(|e| panic!("pull {by_digest}: {e}"));
    }
    let pulled = remote.inspect_image(&by_digest).await.unwrap();
    assert_eq!(pulled.id.as_deref(), Some(id.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_in_another_repository_is_mounted_not_sent() {
    let docker = local_docker().await;
    let (reg, _host) = lab_client();
    let local_tag = format!("davit-registry-test/{}:1", unique("img"));
    make_image(&docker, &local_tag, &unique("mount")).await;
    let source = unique("mount-src");
    let target = unique("mount-dst");
    let opts = PushOptions {
        tags: vec!["v1".into()],
        ..Default::default()
    };
    let first = push_image(&docker, &local_tag, &reg, &source, &opts)
        .await
        .unwrap();
    assert_eq!(first.uploaded(), 3);

    let events = Events::default();
    let opts = PushOptions {
        tags: vec!["v1".into()],
        mount_from: vec![source.clone()],
        progress: Some(events.sink()),
    };
    let second = push_image(&docker, &local_tag, &reg, &target, &opts)
        .await
        .unwrap();
    assert_eq!(events.uploads(), 0, "{second:?}");
    assert_eq!(events.mounts(), 3);
    assert!(second.blobs.iter().all(|b| b.2
        == BlobSource::Mounted {
            from: source.clone()
        }));
    assert_eq!(second.digest, first.digest);
    assert_eq!(
        reg.resolve_digest(&target, "v1").await.unwrap(),
        first.digest
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_image_s_own_registry_name_is_a_mount_source() {
    // An image pulled or tagged as REGISTRY/app:x is mounted from `app` when pushed to `app2`.
    let docker = local_docker().await;
    let (reg, host) = lab_client();
    let src_repo = unique("named");
    let local_tag = format!("{host}/{src_repo}:v1");
    make_image(&docker, &local_tag, &unique("named")).await;
    push_image(
        &docker,
        &local_tag,
        &reg,
        &src_repo,
        &PushOptions {
            tags: vec!["v1".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let events = Events::default();
    let dst = unique("named-dst");
    let opts = PushOptions {
        tags: vec!["v1".into()],
        progress: Some(events.sink()),
        ..Default::default()
    };
    let r = push_image(&docker, &local_tag, &reg, &dst, &opts)
        .await
        .unwrap();
    assert_eq!((events.uploads(), r.mounted()), (0, 3));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_the_engine_lacks_is_a_clear_error() {
    let docker = local_docker().await;
    let (reg, _) = lab_client();
    let err = push_image(
        &docker,
        "davit-no-such-image:nope",
        &reg,
        "x",
        &PushOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::NoSuchImage { .. }), "{err:?}");
    assert!(
        err.to_string().contains("davit-no-such-image:nope"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_tag_is_refused_before_anything_happens() {
    let docker = local_docker().await;
    let (reg, _) = lab_client();
    let opts = PushOptions {
        tags: vec!["-bad".into()],
        ..Default::default()
    };
    let err = push_image(&docker, "whatever", &reg, "x", &opts)
        .await
        .unwrap_err();
    assert!(err.is_usage(), "{err:?}");
    assert!(err.to_string().contains("\"-bad\""), "{err}");
}
