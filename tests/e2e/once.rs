//! Each image reaches each service once and in order, under real concurrency: many deliveries
//! in flight at once on a multi-threaded runtime, ECS slowed behind the loopback proxy so that
//! they overlap, and every ECS call counted by that proxy. A service's record (desired state,
//! applied state, lease) decides who applies; everyone else makes no ECS call.
//!
//! moto applies DynamoDB writes without a lock, so wherever deliveries write concurrently the
//! app's DynamoDB client goes through a proxy with `serialize_dynamodb_writes`: that restores
//! DynamoDB's own per-request atomicity (a conditional write checks and writes in one step), and
//! nothing more (see `imagehook_tests::proxy`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use imagehook_core::adapters::{DynamoStore, EcsDeployer, EmbeddedStore};
use imagehook_core::app::App;
use imagehook_core::app::config::DeployMode;
use imagehook_core::model::event::Timestamp;
use imagehook_core::model::function::Function;
use imagehook_core::model::records::{ReceiptStatus, ServiceRecord};
use imagehook_core::ports::store::{Key, Record, keys};
use imagehook_tests::proxy::{Fail, Proxy, ProxyOptions};
use imagehook_tests::*;
use serde_json::{Value, json};
use tokio::sync::Barrier;
use tokio::task::JoinHandle;

const REPO: &str = "contoso.azurecr.io/shop/api";
/// What the service runs before any push.
const BEFORE: &str = "contoso.azurecr.io/shop/api:v1.4.1";
/// Enough for deliveries released together to overlap the holder's four ECS calls.
const ECS_DELAY: Duration = Duration::from_millis(300);
/// Bounded waits: a condition the test waits for that never comes fails the test here.
const PATIENCE: Duration = Duration::from_secs(60);

/// Where the app keeps its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    /// moto's DynamoDB, through the proxy with serialized writes.
    Dynamo,
    /// The embedded store, in process (ECS is still moto's, through the proxy).
    Embedded,
}

/// One service, the proxy in front of moto, and an app whose every AWS call goes through it.
struct Rig {
    /// moto directly: fixtures and checks, never counted by the proxy.
    sdk: SdkConfig,
    proxy: Arc<Proxy>,
    fx: EcsFixture,
    app: Arc<App>,
    /// The family's revisions before any push.
    revisions_before: usize,
}

struct RigSpec {
    on: On,
    rules: fn(&EcsFixture) -> String,
    ecs_delay: Duration,
    lease: Duration,
    /// Extra interceptor on the app's ECS client.
    ecs_hook: Option<Hook>,
}

impl Default for RigSpec {
    fn default() -> Self {
        Self {
            on: On::Dynamo,
            rules: |fx| rules(fx, "v*"),
            ecs_delay: ECS_DELAY,
            lease: imagehook_core::pipeline::converge::DEFAULT_LEASE,
            ecs_hook: None,
        }
    }
}

fn rules(fx: &EcsFixture, tags: &str) -> String {
    json!([{"repository": REPO, "tags": tags, "cluster": fx.cluster, "service": fx.service,
            "container": "api", "stage": "prod"}])
    .to_string()
}

async fn rig(spec: RigSpec) -> Rig {
    let sdk = sdk().await;
    let proxy = Arc::new(Proxy::start(
        &endpoint(),
        ProxyOptions {
            ecs_delay: spec.ecs_delay,
            serialize_dynamodb_writes: true,
        },
    ));
    let through = proxy.sdk().await;
    let fx = create_service(&sdk, BEFORE).await;
    let mut ecs = aws_sdk_ecs::config::Builder::from(&through);
    if let Some(hook) = spec.ecs_hook {
        ecs = ecs.interceptor(hook);
    }
    let deployer = Arc::new(EcsDeployer::new(ecs_client_from(ecs.build())));
    let rules = (spec.rules)(&fx);
    let app = match spec.on {
        On::Dynamo => {
            let table = create_table(&sdk).await;
            let mut config = open_config(&table, &rules, DeployMode::Apply);
            config.lease = spec.lease;
            let store = Arc::new(DynamoStore::new(dynamo_client(&through), &table));
            App::new(config, store, deployer)
        }
        On::Embedded => {
            let mut config = open_config("unused", &rules, DeployMode::Apply);
            config.table_name = None;
            config.lease = spec.lease;
            App::new(config, Arc::new(EmbeddedStore::in_memory()), deployer)
        }
    };
    let revisions_before = revisions(&sdk, &fx).await;
    Rig {
        sdk,
        proxy,
        fx,
        app: Arc::new(app),
        revisions_before,
    }
}

impl Rig {
    /// Starts one delivery of `event` on its own task.
    fn deliver(&self, event: &str) -> JoinHandle<Reply> {
        let (app, event) = (Arc::clone(&self.app), event.to_owned());
        tokio::spawn(async move { invoke(&app, Function::Push, &event).await })
    }

    /// Starts one delivery of each event, all released at the same instant.
    fn deliver_together(&self, events: &[String]) -> Vec<JoinHandle<Reply>> {
        let start = Arc::new(Barrier::new(events.len()));
        events
            .iter()
            .map(|event| {
                let (app, event, start) =
                    (Arc::clone(&self.app), event.clone(), Arc::clone(&start));
                tokio::spawn(async move {
                    start.wait().await;
                    invoke(&app, Function::Push, &event).await
                })
            })
            .collect()
    }

    async fn service(&self) -> ServiceRecord {
        self.app
            .store()
            .get(&Key::new(
                keys::service_pk(&self.fx.cluster, &self.fx.service),
                keys::SERVICE_CURRENT,
            ))
            .await
            .unwrap()
            .and_then(Record::service)
            .unwrap_or_default()
    }

    async fn receipt_status(&self, event_id: &str) -> Option<ReceiptStatus> {
        self.app
            .store()
            .get(&keys::receipt("acr", event_id))
            .await
            .unwrap()
            .and_then(Record::receipt)
            .map(|r| r.status)
    }

    /// The app container's image in what the service runs now.
    async fn runs(&self) -> String {
        container_image(&running(&self.sdk, &self.fx).await.task_definition, "api")
    }

    async fn revisions(&self) -> usize {
        revisions(&self.sdk, &self.fx).await
    }

    /// ECS writes the app made (through the proxy): (RegisterTaskDefinition, UpdateService).
    fn ecs_writes(&self) -> (usize, usize) {
        (
            self.proxy.count("RegisterTaskDefinition"),
            self.proxy.count("UpdateService"),
        )
    }

    /// Waits (boundedly) until `what` holds of the proxy's calls.
    async fn until_calls(&self, why: &str, what: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !what(&self.proxy.calls()) {
            assert!(
                Instant::now() < deadline,
                "gave up waiting for {why}: {:?}",
                self.proxy.calls()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits (boundedly) until the lease a dead holder left on the service has expired.
    async fn until_lease_expired(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let lease = self
                .service()
                .await
                .lease
                .expect("the killed holder's lease is on record");
            if lease.until.as_str() < Timestamp::now().as_str() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the lease never expired: {lease:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn replies(handles: Vec<JoinHandle<Reply>>) -> Vec<Reply> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("a delivery's task"));
    }
    out
}

/// The sample ACR push with its event id, sender time, tag and digest replaced.
fn acr_push(id: &str, timestamp: &str, tag: &str, digest: &str) -> String {
    let event = event_file("acr-push.json");
    let mut body = body_of(&event);
    body["id"] = json!(id);
    body["timestamp"] = json!(timestamp);
    body["target"]["tag"] = json!(tag);
    body["target"]["digest"] = json!(digest);
    with_body(&event, &body)
}

fn sample_id_and_digest() -> (String, String) {
    let body = body_of(&event_file("acr-push.json"));
    (
        body["id"].as_str().unwrap().to_owned(),
        body["target"]["digest"].as_str().unwrap().to_owned(),
    )
}

/// A digest no other test pushes.
fn digest(seed: &str) -> String {
    use sha2::Digest;
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(unique(seed).as_bytes()))
    )
}

/// The one event's outcome in a reply, and its deployments' (outcome, reason).
fn outcome(reply: &Reply) -> (String, Vec<(String, String)>) {
    assert_eq!(reply.status, 200, "{}", reply.body);
    let e = &reply.body["events"][0];
    let deployments = e["deployments"]
        .as_array()
        .map(|ds| {
            ds.iter()
                .map(|d| {
                    (
                        d["outcome"].as_str().unwrap_or_default().to_owned(),
                        d["reason"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (
        e["outcome"].as_str().unwrap_or_default().to_owned(),
        deployments,
    )
}

/// The outcome of the one deployment a reply holds.
fn only_deployment(reply: &Reply) -> (String, String) {
    let (_, mut ds) = outcome(reply);
    assert_eq!(ds.len(), 1, "{}", reply.body);
    ds.remove(0)
}

/// Deliveries of one event: exactly one reply says `updated`; every other one was queued behind
/// it (its reason names the carrying event), found the service already running the image, or
/// came after the event was complete (`duplicate`, no deployment).
fn assert_one_updated_rest_carried(replies: &[Reply], event: &str) {
    let mut updated = 0;
    for reply in replies {
        let (event_outcome, ds) = outcome(reply);
        match ds.as_slice() {
            [] => assert_eq!(event_outcome, "duplicate", "{}", reply.body),
            [(o, _)] if o == "updated" => updated += 1,
            [(o, reason)] if o == "queued" => {
                assert!(reason.contains(event), "{}", reply.body)
            }
            [(o, _)] if o == "unchanged" => {}
            _ => panic!("unexpected reply: {}", reply.body),
        }
    }
    let all: Vec<&Value> = replies.iter().map(|r| &r.body).collect();
    assert_eq!(updated, 1, "{all:#?}");
}

async fn fifty_overlapping_deliveries_deploy_once(on: On) {
    let rig = rig(RigSpec {
        on,
        ..RigSpec::default()
    })
    .await;
    let (id, digest) = sample_id_and_digest();
    let event = format!("acr#{id}");
    let replies = replies(rig.deliver_together(&vec![event_file("acr-push.json"); 50])).await;

    assert_eq!(rig.ecs_writes(), (1, 1), "{:?}", rig.proxy.calls());
    assert_one_updated_rest_carried(&replies, &event);
    // The deliveries did overlap: some were queued behind the one that applied.
    assert!(
        replies
            .iter()
            .any(|r| outcome(r).1.iter().any(|(o, _)| o == "queued")),
        "no delivery overlapped the one that deployed"
    );

    assert_eq!(rig.runs().await, format!("{REPO}@{digest}"));
    assert_eq!(rig.revisions().await, rig.revisions_before + 1);
    let service = rig.service().await;
    assert_eq!(service.desired.map(|d| d.event), Some(event.clone()));
    let applied = service.applied.expect("applied state");
    assert_eq!(
        (applied.event.as_str(), applied.outcome.as_str()),
        (event.as_str(), "updated")
    );
    assert_eq!(service.lease, None);
    assert_eq!(rig.receipt_status(&id).await, Some(ReceiptStatus::Done));
    if on == On::Dynamo {
        assert_eq!(rig.proxy.most_concurrent_writes(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_overlapping_deliveries_of_one_push_deploy_once_on_dynamodb() {
    fifty_overlapping_deliveries_deploy_once(On::Dynamo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_overlapping_deliveries_of_one_push_deploy_once_on_the_embedded_store() {
    fifty_overlapping_deliveries_deploy_once(On::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_tags_of_one_digest_pushed_at_once_make_one_revision() {
    let rig = rig(RigSpec {
        rules: |fx| rules(fx, "*"),
        ..RigSpec::default()
    })
    .await;
    let digest = digest("four-tags");
    // One manifest tagged four times, stamped alike by the sender: the receipt time orders them.
    let events: Vec<String> = ["v1.4.2", "v1.4", "v1", "latest"]
        .iter()
        .map(|tag| {
            acr_push(
                &unique("tagged"),
                "2026-11-20T10:15:30.1234567Z",
                tag,
                &digest,
            )
        })
        .collect();
    let replies = replies(rig.deliver_together(&events)).await;

    assert_eq!(rig.ecs_writes(), (1, 1), "{:?}", rig.proxy.calls());
    for reply in &replies {
        let (event_outcome, _) = outcome(reply);
        assert_eq!(event_outcome, "applied", "{}", reply.body);
        let (o, _) = only_deployment(reply);
        assert!(
            ["updated", "unchanged", "queued", "superseded"].contains(&o.as_str()),
            "{}",
            reply.body
        );
    }
    assert_eq!(rig.runs().await, format!("{REPO}@{digest}"));
    assert_eq!(rig.revisions().await, rig.revisions_before + 1);
    // Converged: what was last desired is what was last applied, and nobody holds the lease.
    let service = rig.service().await;
    let desired = service.desired.expect("desired state");
    assert!(desired.image.ends_with(&digest), "{desired:?}");
    let applied = service.applied.expect("applied state");
    assert_eq!(applied.event, desired.event);
    assert_eq!(service.lease, None);
}

/// How the older and the newer push of `newer_push_wins_*` reach the function.
#[derive(Debug, Clone, Copy)]
enum Arrival {
    /// The newer first; the older once the newer is at ECS.
    NewerFirst,
    /// The older first; the newer once the older is at ECS.
    OlderFirst,
    /// Both released at the same instant.
    Together,
    /// The older once the newer was applied.
    AfterNewerApplied,
}

async fn newer_push_wins(arrival: Arrival) {
    let rig = rig(RigSpec::default()).await;
    let (old_id, new_id) = (unique("older"), unique("newer"));
    let (old_digest, new_digest) = (digest("older"), digest("newer"));
    let older = acr_push(
        &old_id,
        "2026-11-20T10:15:30.0000000Z",
        "v1.4.2",
        &old_digest,
    );
    let newer = acr_push(
        &new_id,
        "2026-11-20T10:20:30.0000000Z",
        "v1.5.0",
        &new_digest,
    );
    let at_ecs = |calls: &[String]| calls.iter().any(|c| c == "DescribeServices");

    let (old_reply, new_reply) = match arrival {
        Arrival::NewerFirst => {
            let n = rig.deliver(&newer);
            rig.until_calls("the newer push at ECS", at_ecs).await;
            let o = rig.deliver(&older);
            (o.await.unwrap(), n.await.unwrap())
        }
        Arrival::OlderFirst => {
            let o = rig.deliver(&older);
            rig.until_calls("the older push at ECS", at_ecs).await;
            let n = rig.deliver(&newer);
            (o.await.unwrap(), n.await.unwrap())
        }
        Arrival::AfterNewerApplied => {
            let n = rig.deliver(&newer).await.unwrap();
            (rig.deliver(&older).await.unwrap(), n)
        }
        Arrival::Together => {
            let mut r = replies(rig.deliver_together(&[older, newer])).await;
            let n = r.pop().unwrap();
            (r.pop().unwrap(), n)
        }
    };
    let ((old_outcome, old_reason), (new_outcome, _)) =
        (only_deployment(&old_reply), only_deployment(&new_reply));
    let context = format!(
        "{arrival:?}: older {} newer {} calls {:?}",
        old_reply.body,
        new_reply.body,
        rig.proxy.calls()
    );

    // Never does the service end on the older push.
    assert_eq!(
        rig.runs().await,
        format!("{REPO}@{new_digest}"),
        "{context}"
    );
    let service = rig.service().await;
    let new_event = format!("acr#{new_id}");
    assert_eq!(
        service.desired.as_ref().map(|d| d.event.as_str()),
        Some(new_event.as_str()),
        "{context}"
    );
    assert_eq!(
        service.applied.as_ref().map(|a| a.event.as_str()),
        Some(new_event.as_str()),
        "{context}"
    );
    assert_eq!(service.lease, None, "{context}");

    match (arrival, old_outcome.as_str()) {
        // It arrived second: it never reaches ECS, and says what won.
        (Arrival::NewerFirst | Arrival::AfterNewerApplied, o) => {
            assert_eq!(o, "superseded", "{context}");
            assert!(old_reason.contains(&new_id), "{context}");
            assert_eq!(new_outcome, "updated", "{context}");
        }
        // It held the service first, and stopped before ECS for the newer one (which its
        // holder carried), or was applied before the newer arrived, which was applied after.
        (_, "superseded") => {
            assert!(old_reason.contains(&new_id), "{context}");
            assert!(
                ["updated", "queued"].contains(&new_outcome.as_str()),
                "{context}"
            );
        }
        (_, "updated") => {
            assert!(
                ["updated", "queued"].contains(&new_outcome.as_str()),
                "{context}"
            );
            assert_eq!(rig.ecs_writes(), (2, 2), "{context}");
            assert_eq!(rig.revisions().await, rig.revisions_before + 2, "{context}");
            return;
        }
        _ => panic!("the older push was neither superseded nor applied: {context}"),
    }
    assert_eq!(rig.ecs_writes(), (1, 1), "{context}");
    assert_eq!(rig.revisions().await, rig.revisions_before + 1, "{context}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_older_push_arriving_second_is_superseded() {
    newer_push_wins(Arrival::NewerFirst).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_older_push_arriving_after_the_newer_was_applied_is_superseded() {
    newer_push_wins(Arrival::AfterNewerApplied).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_newer_push_arriving_second_is_what_the_service_ends_on() {
    newer_push_wins(Arrival::OlderFirst).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_newer_and_an_older_push_together_end_on_the_newer() {
    newer_push_wins(Arrival::Together).await;
}

/// A push queued behind the delivery that holds the service's lease is applied by that holder:
/// its history entry then says what was applied there, not `queued`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_queued_behind_the_holder_is_listed_as_what_the_holder_applied() {
    let rig = rig(RigSpec::default()).await;
    let (old_id, new_id) = (unique("older"), unique("newer"));
    let new_digest = digest("newer");
    let older = acr_push(
        &old_id,
        "2026-11-20T10:15:30.0000000Z",
        "v1.4.2",
        &digest("older"),
    );
    let newer = acr_push(
        &new_id,
        "2026-11-20T10:20:30.0000000Z",
        "v1.5.0",
        &new_digest,
    );
    let o = rig.deliver(&older);
    rig.until_calls("the older push at ECS", |calls| {
        calls.iter().any(|c| c == "DescribeServices")
    })
    .await;
    let new_reply = rig.deliver(&newer).await.unwrap();
    o.await.unwrap();
    assert_eq!(
        only_deployment(&new_reply).0,
        "queued",
        "{}",
        new_reply.body
    );
    assert_eq!(rig.runs().await, format!("{REPO}@{new_digest}"));

    let (status, history) = images_api(&rig.app, REPO, Some("prod")).await;
    assert_eq!(status, 200, "{history}");
    let entry = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == format!("acr#{new_id}"))
        .cloned()
        .unwrap_or_else(|| panic!("no entry for the newer push: {history}"));
    let service = &entry["services"][0];
    assert_eq!(service["outcome"], "updated", "{entry}");
    assert!(
        service["reason"].as_str().unwrap().contains(&old_id),
        "the holder that applied it: {entry}"
    );
    assert!(service["task_definition"].is_string(), "{entry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sender_retrying_while_ecs_is_slow_deploys_once() {
    // registry:2 gives up on a delivery after 1 s and sends it again; the function it gave up
    // on keeps running (Lambda does not stop when the client hangs up).
    let rig = rig(RigSpec {
        ecs_delay: Duration::from_millis(1500),
        ..RigSpec::default()
    })
    .await;
    let (id, digest) = sample_id_and_digest();
    let event = event_file("acr-push.json");
    let first = rig.deliver(&event);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = rig.deliver(&event);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let third = rig.deliver(&event);
    let replies = replies(vec![first, second, third]).await;

    assert_eq!(rig.ecs_writes(), (1, 1), "{:?}", rig.proxy.calls());
    assert_one_updated_rest_carried(&replies, &format!("acr#{id}"));
    assert_eq!(rig.runs().await, format!("{REPO}@{digest}"));
    assert_eq!(rig.revisions().await, rig.revisions_before + 1);
    assert_eq!(rig.service().await.lease, None);
    assert_eq!(rig.receipt_status(&id).await, Some(ReceiptStatus::Done));
}

/// An interceptor on the app's ECS client that runs `then` once, right before the first request
/// for `op` is sent.
#[derive(Clone)]
struct Hook {
    op: &'static str,
    fired: Arc<AtomicBool>,
    then: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook").field("op", &self.op).finish()
    }
}

impl aws_sdk_ecs::config::Intercept for Hook {
    fn name(&self) -> &'static str {
        "Hook"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_ecs::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_ecs::config::RuntimeComponents,
        _cfg: &mut aws_sdk_ecs::config::ConfigBag,
    ) -> Result<(), aws_sdk_ecs::error::BoxError> {
        let op = operation_of(context.request().headers().get("x-amz-target"));
        if op == self.op && !self.fired.swap(true, Ordering::SeqCst) {
            (self.then)();
        }
        Ok(())
    }
}

/// Where the holder is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// Its revision registered, the service not moved to it yet.
    BeforeUpdateService,
    /// The service moved, nothing of it recorded yet.
    BeforeCommit,
}

async fn a_killed_holder_is_resumed_without_another_revision(kill: Kill) {
    let lease = Duration::from_secs(2);
    // The proxy only exists once the rig does; the hook reaches it through this slot.
    let slot: Arc<std::sync::OnceLock<Arc<Proxy>>> = Arc::default();
    let hook = (kill == Kill::BeforeCommit).then(|| {
        let slot = Arc::clone(&slot);
        Hook {
            op: "UpdateService",
            fired: Arc::default(),
            // The next DynamoDB transaction after UpdateService is the holder's commit: it never
            // answers, and the holder dies waiting for it.
            then: Arc::new(move || {
                slot.get()
                    .expect("the proxy")
                    .fail_next("TransactWriteItems", Fail::Hang)
            }),
        }
    });
    let rig = rig(RigSpec {
        ecs_delay: Duration::ZERO,
        lease,
        ecs_hook: hook,
        ..RigSpec::default()
    })
    .await;
    slot.set(Arc::clone(&rig.proxy)).ok().unwrap();
    let (id, digest) = sample_id_and_digest();
    let event = event_file("acr-push.json");
    if kill == Kill::BeforeUpdateService {
        rig.proxy.fail_next("UpdateService", Fail::Hang);
    }

    let holder = rig.deliver(&event);
    match kill {
        Kill::BeforeUpdateService => {
            rig.until_calls("UpdateService", |c| c.iter().any(|c| c == "UpdateService"))
                .await
        }
        Kill::BeforeCommit => {
            rig.until_calls("the commit after UpdateService", |c| {
                c.iter()
                    .skip_while(|c| *c != "UpdateService")
                    .any(|c| c == "TransactWriteItems")
            })
            .await
        }
    }
    // The process dies: the delivery stops where it is and never releases its lease.
    holder.abort();
    assert!(matches!(holder.await, Err(e) if e.is_cancelled()));

    let dead = rig.service().await;
    assert!(dead.lease.is_some(), "{dead:?}");
    assert_eq!(dead.applied, None, "{dead:?}");
    assert_eq!(rig.receipt_status(&id).await, Some(ReceiptStatus::Pending));
    assert_eq!(rig.ecs_writes(), (1, 1));
    assert_eq!(rig.revisions().await, rig.revisions_before + 1);
    let registered = {
        let on_ecs = rig.runs().await;
        match kill {
            Kill::BeforeUpdateService => assert_eq!(on_ecs, BEFORE),
            Kill::BeforeCommit => assert_eq!(on_ecs, format!("{REPO}@{digest}")),
        }
        aws_sdk_ecs::Client::new(&rig.sdk)
            .describe_task_definition()
            .task_definition(&rig.fx.family)
            .send()
            .await
            .unwrap()
            .task_definition()
            .and_then(|td| td.task_definition_arn())
            .unwrap()
            .to_owned()
    };

    rig.until_lease_expired().await;
    let reply = invoke(&rig.app, Function::Push, &event).await;

    let (event_outcome, _) = outcome(&reply);
    assert_eq!(event_outcome, "duplicate", "{}", reply.body);
    let (deployed, _) = only_deployment(&reply);
    let expected = match kill {
        Kill::BeforeUpdateService => "updated",
        Kill::BeforeCommit => "unchanged",
    };
    assert_eq!(deployed, expected, "{}", reply.body);
    // No revision beyond the one the killed holder registered.
    assert_eq!(
        rig.proxy.count("RegisterTaskDefinition"),
        1,
        "{:?}",
        rig.proxy.calls()
    );
    let updates = match kill {
        // The hung request, then the resumed holder's.
        Kill::BeforeUpdateService => 2,
        Kill::BeforeCommit => 1,
    };
    assert_eq!(
        rig.proxy.count("UpdateService"),
        updates,
        "{:?}",
        rig.proxy.calls()
    );
    assert_eq!(rig.revisions().await, rig.revisions_before + 1);
    let now = running(&rig.sdk, &rig.fx).await;
    assert_eq!(now.task_definition_arn, registered);
    assert_eq!(
        container_image(&now.task_definition, "api"),
        format!("{REPO}@{digest}")
    );
    let service = rig.service().await;
    let applied = service.applied.expect("applied state");
    assert_eq!(
        (applied.event.as_str(), applied.outcome.as_str()),
        (format!("acr#{id}").as_str(), expected)
    );
    assert_eq!(service.lease, None);
    assert_eq!(rig.receipt_status(&id).await, Some(ReceiptStatus::Done));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_holder_killed_between_register_and_update_is_resumed_on_its_revision() {
    Box::pin(a_killed_holder_is_resumed_without_another_revision(
        Kill::BeforeUpdateService,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_holder_killed_after_update_before_recording_is_resumed_without_ecs_writes() {
    Box::pin(a_killed_holder_is_resumed_without_another_revision(
        Kill::BeforeCommit,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_queued_behind_a_holder_that_dies_leaves_the_event_to_resume() {
    // The sender retries while the holder is at ECS: the retry is queued behind it. Then the
    // holder dies (Lambda's timeout, say) before UpdateService answers. The event is not
    // deployed: the next redelivery, once the lease expired, must take it over.
    let rig = rig(RigSpec {
        ecs_delay: Duration::ZERO,
        lease: Duration::from_secs(2),
        ..RigSpec::default()
    })
    .await;
    let (id, digest) = sample_id_and_digest();
    let event = event_file("acr-push.json");
    rig.proxy.fail_next("UpdateService", Fail::Hang);
    let holder = rig.deliver(&event);
    rig.until_calls("UpdateService", |c| c.iter().any(|c| c == "UpdateService"))
        .await;

    let retry = invoke(&rig.app, Function::Push, &event).await;
    let (queued, reason) = only_deployment(&retry);
    assert_eq!(queued, "queued", "{}", retry.body);
    assert!(reason.contains(&format!("acr#{id}")), "{}", retry.body);

    holder.abort();
    assert!(matches!(holder.await, Err(e) if e.is_cancelled()));
    assert_eq!(rig.runs().await, BEFORE);
    rig.until_lease_expired().await;

    let again = invoke(&rig.app, Function::Push, &event).await;
    let context = format!(
        "redelivery after the holder died: {} receipt {:?} service {:?} calls {:?}",
        again.body,
        rig.receipt_status(&id).await,
        rig.service().await,
        rig.proxy.calls()
    );
    assert_eq!(
        rig.runs().await,
        format!("{REPO}@{digest}"),
        "the event was never deployed: {context}"
    );
    assert_eq!(only_deployment(&again).0, "updated", "{context}");
    assert_eq!(rig.proxy.count("RegisterTaskDefinition"), 1, "{context}");
    assert_eq!(rig.revisions().await, rig.revisions_before + 1, "{context}");
    let service = rig.service().await;
    assert_eq!(
        service.applied.map(|a| a.event),
        Some(format!("acr#{id}")),
        "{context}"
    );
    assert_eq!(service.lease, None, "{context}");
}
