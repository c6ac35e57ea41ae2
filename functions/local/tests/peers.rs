//! imagehook behind a real CNCF Distribution registry (Debian's `docker-registry`, 2.8) that
//! posts its notifications to `imagehook serve`, with images pushed and deleted by `skopeo`: the
//! envelope, the headers and the retry behaviour are the registry's own, not a fixture's. One
//! registry reached as `127.0.0.1:<port>` and as `localhost:<port>` is one registry
//! (`REGISTRY_ALIASES`).
//!
//! Needs `docker-registry` and `skopeo` on the PATH (`scripts/test` installs both from Debian);
//! without them the test says so and passes, except under `CI=true`, where it fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const TOKEN: &str = "sample-webhook-token";

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// An OCI image layout with one image tagged `tag`, written by hand: an empty layer, its config
/// and its manifest.
fn oci_layout(dir: &Path, tag: &str, label: &str) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = sha256(bytes);
        std::fs::write(blobs.join(&digest[7..]), bytes).unwrap();
        (digest, bytes.len())
    };
    // An empty tar archive: two zero blocks.
    let layer = vec![0u8; 1024];
    let (layer_digest, layer_size) = put(&layer);
    let config = json!({"architecture": "amd64", "os": "linux",
                        "config": {"Labels": {"build": label}},
                        "rootfs": {"type": "layers", "diff_ids": [layer_digest]}})
    .to_string();
    let (config_digest, config_size) = put(config.as_bytes());
    let manifest = json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer_size}]})
    .to_string();
    let (manifest_digest, manifest_size) = put(manifest.as_bytes());
    std::fs::write(
        dir.join("oci-layout"),
        json!({"imageLayoutVersion": "1.0.0"}).to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("index.json"),
        json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": tag}}]})
        .to_string(),
    )
    .unwrap();
}

/// The registry, killed when dropped.
struct Registry(Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `docker-registry` on 127.0.0.1:`port`, notifying `imagehook serve` on `serve_port`, with the
/// endpoint settings docs/senders/distribution.md recommends.
fn start_registry(bin: &Path, dir: &Path, port: u16, serve_port: u16) -> Registry {
    let endpoint = |name: &str, path: &str, skip: &str| {
        format!(
            "    - name: {name}\n      url: http://127.0.0.1:{serve_port}/{path}\n      headers:\n        Authorization: [Bearer {TOKEN}]\n      timeout: 10s\n      threshold: 5\n      backoff: 1s\n      ignore:\n        mediatypes: [application/octet-stream]\n        actions: [pull, mount, {skip}]\n"
        )
    };
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\nnotifications:\n  endpoints:\n{}{}",
        dir.join("storage").display(),
        endpoint("imagehook-push", "push", "delete"),
        endpoint("imagehook-delete", "delete", "push"),
    );
    let path = dir.join("config.yml");
    std::fs::write(&path, config).unwrap();
    let child = Command::new(bin)
        .args(["serve"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry starts");
    let registry = Registry(child);
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "docker-registry did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    registry
}

fn skopeo(bin: &Path, args: &[&str]) {
    let out = Command::new(bin)
        .arg("--insecure-policy")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copies the layout's image to `dest` and answers the digest of the manifest the registry got
/// (skopeo compresses the layer on the way, so it is not the layout's own).
fn push(bin: &Path, layout: &Path, tag: &str, dest: &str) -> String {
    let digest_file = layout.with_extension("digest");
    skopeo(
        bin,
        &[
            "copy",
            "--dest-tls-verify=false",
            "--digestfile",
            digest_file.to_str().unwrap(),
            &format!("oci:{}:{tag}", layout.display()),
            &format!("docker://{dest}:{tag}"),
        ],
    );
    std::fs::read_to_string(digest_file)
        .unwrap()
        .trim()
        .to_owned()
}

fn imagehook(state: &Path) -> Command {
    let mut c = common::local(state);
    c.env("RESOLVE_DIGESTS", "off").env(
        "DEPLOY_RULES",
        r#"[{"repository": "shop/api", "cluster": "prod", "service": "api"}]"#,
    );
    c
}

/// The repository's digests as `imagehook history` lists them, once `ready` holds of them
/// (the registry notifies asynchronously).
fn images_until(state: &Path, repository: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let out = imagehook(state)
            .args(["history", repository])
            .output()
            .unwrap();
        let printed: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let images = printed["images"].as_array().cloned().unwrap_or_default();
        if ready(&images) {
            return images;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{repository}: {printed}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_real_registrys_pushes_and_deletes_are_recorded_under_one_name() {
    let (Some(registry_bin), Some(skopeo_bin)) = (on_path("docker-registry"), on_path("skopeo"))
    else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "docker-registry and skopeo are needed under CI (scripts/test installs them)"
        );
        eprintln!(
            "skipped: docker-registry or skopeo is not installed (apt-get install docker-registry skopeo)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let canonical = format!("127.0.0.1:{port}");
    let alias = format!("localhost:{port}");

    let mut serve = imagehook(&dir.path().join("state"));
    serve
        .env("AUTH_MODE", "token")
        .env("WEBHOOK_SECRETS", TOKEN)
        .env("REGISTRY_ALIASES", format!("{alias}={canonical}"));
    let (_server, serve_port) = common::serve(serve);
    let _registry = start_registry(&registry_bin, dir.path(), port, serve_port);
    let state = dir.path().join("state");
    let repository = format!("{canonical}/shop/api");

    // Pushed through the canonical name: the manifest push is the image, its blobs ignored.
    let layout = dir.path().join("layout-a");
    oci_layout(&layout, "1.0.0", "a");
    let first = push(
        &skopeo_bin,
        &layout,
        "1.0.0",
        &format!("{canonical}/shop/api"),
    );
    let images = images_until(&state, &repository, |i| {
        i.iter().any(|x| x["digest"] == first.as_str())
    });
    let a = images
        .iter()
        .find(|x| x["digest"] == first.as_str())
        .unwrap();
    assert_eq!(a["status"], "active", "{a}");
    assert_eq!(a["tags"], json!(["1.0.0"]), "{a}");

    // A second image, pushed through the alias: recorded under the canonical name too.
    let layout = dir.path().join("layout-b");
    oci_layout(&layout, "1.1.0", "b");
    let second = push(&skopeo_bin, &layout, "1.1.0", &format!("{alias}/shop/api"));
    images_until(&state, &repository, |i| {
        i.iter().any(|x| x["digest"] == second.as_str())
    });

    // The first deleted by digest through the alias: the same record becomes a tombstone.
    skopeo(
        &skopeo_bin,
        &[
            "delete",
            "--tls-verify=false",
            &format!("docker://{alias}/shop/api@{first}"),
        ],
    );
    let images = images_until(&state, &repository, |i| {
        i.iter()
            .any(|x| x["digest"] == first.as_str() && x["status"] == "deleted")
    });
    assert_eq!(images.len(), 2, "{images:?}");
    let out = imagehook(&state)
        .args(["history", &format!("{alias}/shop/api")])
        .output()
        .unwrap();
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(
        printed["images"].as_array().is_none_or(Vec::is_empty),
        "records under the alias: {printed}"
    );
}
