//! The test proxy in front of moto (`imagehook_tests::proxy`) does what the concurrency tests
//! rely on: it forwards faithfully, holds ECS calls, counts, makes DynamoDB writes atomic and
//! fails the calls it is told to fail.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use imagehook_tests::proxy::{Fail, Proxy, ProxyOptions};
use imagehook_tests::*;
use serde_json::{Value, json};

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

/// A loopback server that answers every request with what it received, as JSON, with status
/// 201 and a header of its own.
async fn echo_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let method = req.method().to_string();
                        let uri = req.uri().to_string();
                        let custom = req
                            .headers()
                            .get("x-custom")
                            .map(|v| v.to_str().unwrap().to_owned());
                        let host = req
                            .headers()
                            .get("host")
                            .map(|v| v.to_str().unwrap().to_owned());
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let seen = json!({
                            "method": method, "uri": uri, "x-custom": custom, "host": host,
                            "body": String::from_utf8_lossy(&body),
                        });
                        let mut resp =
                            hyper::Response::new(Full::new(Bytes::from(seen.to_string())));
                        *resp.status_mut() = hyper::StatusCode::CREATED;
                        resp.headers_mut()
                            .insert("x-upstream", "echo".parse().unwrap());
                        Ok::<_, Infallible>(resp)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn forwards_method_path_query_headers_and_body_and_returns_the_answer_unchanged() {
    let upstream = echo_server().await;
    let proxy = Proxy::start(&upstream, ProxyOptions::default());
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for (method, body) in [("POST", "a body"), ("GET", ""), ("DELETE", "x")] {
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}/some/path?a=1&b=two%20words", proxy.url()))
            .header("x-custom", "kept")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers()["x-upstream"], "echo");
        let seen: Value =
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(seen["method"], method);
        assert_eq!(seen["uri"], "/some/path?a=1&b=two%20words");
        assert_eq!(seen["x-custom"], "kept");
        // The Host the client signed (the proxy's), not the upstream's.
        assert_eq!(seen["host"], proxy.url().trim_start_matches("http://"));
        assert_eq!(seen["body"], body);
    }
    // No X-Amz-Target, no Action: counted, under no name.
    assert_eq!(proxy.calls(), vec!["?"; 3]);
}

#[tokio::test]
async fn forwards_the_real_sdk_to_moto() {
    let proxy = Proxy::start(&endpoint(), ProxyOptions::default());
    let through = proxy.sdk().await;
    let direct = sdk().await;
    let table = create_table(&through).await;
    aws_sdk_dynamodb::Client::new(&through)
        .put_item()
        .table_name(&table)
        .item("PK", s("pk"))
        .item("SK", s("sk"))
        .item("via", s("proxy"))
        .send()
        .await
        .unwrap();

    // Read back directly from moto.
    let described = aws_sdk_dynamodb::Client::new(&direct)
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    assert_eq!(
        described.table().and_then(|t| t.table_name()),
        Some(table.as_str())
    );
    let item = get_item(&direct, &table, "pk", "sk").await.unwrap();
    assert_eq!(item["via"], "proxy");
    // And through the proxy, which answers what moto answers.
    assert_eq!(get_item(&through, &table, "pk", "sk").await, Some(item));

    // Errors come back as moto's errors.
    let missing = aws_sdk_dynamodb::Client::new(&through)
        .describe_table()
        .table_name(unique("no-such-table"))
        .send()
        .await
        .unwrap_err();
    assert!(
        missing
            .into_service_error()
            .is_resource_not_found_exception()
    );
    assert_eq!(
        proxy.calls(),
        ["CreateTable", "PutItem", "GetItem", "DescribeTable"]
    );
}

#[tokio::test]
async fn ecs_delay_holds_each_ecs_call_and_leaves_dynamodb_correct() {
    let delay = Duration::from_millis(600);
    let proxy = Proxy::start(
        &endpoint(),
        ProxyOptions {
            ecs_delay: delay,
            ..ProxyOptions::default()
        },
    );
    let through = proxy.sdk().await;
    let ecs = aws_sdk_ecs::Client::new(&through);

    let cluster = unique("cluster");
    let started = Instant::now();
    ecs.create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());

    // Each of several concurrent calls is held at least the delay.
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let (ecs, cluster) = (ecs.clone(), cluster.clone());
        calls.spawn(async move {
            let started = Instant::now();
            let out = ecs.describe_clusters().clusters(cluster).send().await;
            (started.elapsed(), out)
        });
    }
    while let Some(done) = calls.join_next().await {
        let (elapsed, out) = done.unwrap();
        assert!(elapsed >= delay, "{elapsed:?}");
        assert_eq!(
            out.unwrap().clusters()[0].cluster_name(),
            Some(cluster.as_str())
        );
    }

    // DynamoDB calls through the same proxy still do what they should.
    let table = create_table(&through).await;
    aws_sdk_dynamodb::Client::new(&through)
        .put_item()
        .table_name(&table)
        .item("PK", s("a"))
        .item("SK", s("b"))
        .item("n", AttributeValue::N("7".to_owned()))
        .send()
        .await
        .unwrap();
    let item = get_item(&through, &table, "a", "b").await.unwrap();
    assert_eq!(item["n"], 7);
    assert_eq!(proxy.count("DescribeClusters"), 3);
    assert_eq!(proxy.count("CreateCluster"), 1);
}

#[tokio::test]
async fn counts_every_call_in_arrival_order_until_reset() {
    let proxy = Proxy::start(&endpoint(), ProxyOptions::default());
    let through = proxy.sdk().await;
    let table = create_table(&through).await;
    let dynamo = aws_sdk_dynamodb::Client::new(&through);
    let ecs = aws_sdk_ecs::Client::new(&through);
    let sns = aws_sdk_sns::Client::new(&through);
    for sk in ["1", "2"] {
        dynamo
            .put_item()
            .table_name(&table)
            .item("PK", s("p"))
            .item("SK", s(sk))
            .send()
            .await
            .unwrap();
    }
    ecs.list_clusters().send().await.unwrap();
    sns.list_topics().send().await.unwrap();
    get_item(&through, &table, "p", "1").await.unwrap();

    assert_eq!(
        proxy.calls(),
        [
            "CreateTable",
            "PutItem",
            "PutItem",
            "ListClusters",
            "ListTopics",
            "GetItem"
        ]
    );
    assert_eq!(proxy.count("PutItem"), 2);
    assert_eq!(proxy.count("ListClusters"), 1);
    assert_eq!(proxy.count("ListTopics"), 1);
    assert_eq!(proxy.count("UpdateService"), 0);

    // One write after the other: never more than one at moto.
    assert_eq!(proxy.most_concurrent_writes(), 1);

    proxy.reset();
    assert!(proxy.calls().is_empty());
    assert_eq!(proxy.count("PutItem"), 0);
    assert_eq!(proxy.most_concurrent_writes(), 0);
    ecs.list_clusters().send().await.unwrap();
    assert_eq!(proxy.calls(), ["ListClusters"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serialized_writes_let_exactly_one_of_twenty_conditional_puts_win() {
    let proxy = Proxy::atomic_writes();
    let through = proxy.sdk().await;
    let table = create_table(&sdk().await).await;
    let dynamo = aws_sdk_dynamodb::Client::new(&through);

    let mut puts = tokio::task::JoinSet::new();
    for writer in 0..20 {
        let (dynamo, table) = (dynamo.clone(), table.clone());
        puts.spawn(async move {
            let out = dynamo
                .put_item()
                .table_name(table)
                .item("PK", s("lock"))
                .item("SK", s("holder"))
                .item("writer", s(&writer.to_string()))
                .condition_expression("attribute_not_exists(PK)")
                .send()
                .await;
            (writer, out)
        });
    }
    let (mut won, mut refused) = (Vec::new(), 0);
    while let Some(done) = puts.join_next().await {
        let (writer, out) = done.unwrap();
        match out {
            Ok(_) => won.push(writer),
            Err(e) => {
                let e = e.into_service_error();
                assert!(e.is_conditional_check_failed_exception(), "{e:?}");
                refused += 1;
            }
        }
    }
    assert_eq!(won.len(), 1, "{won:?}");
    assert_eq!(refused, 19);
    assert_eq!(proxy.count("PutItem"), 20);
    assert_eq!(proxy.most_concurrent_writes(), 1);
    let item = get_item(&sdk().await, &table, "lock", "holder")
        .await
        .unwrap();
    assert_eq!(item["writer"], won[0].to_string());
}

#[tokio::test]
async fn a_hung_call_times_out_its_caller_while_other_calls_pass() {
    let proxy = Proxy::start(&endpoint(), ProxyOptions::default());
    let through = proxy.sdk().await;
    let table = create_table(&through).await;
    let dynamo = aws_sdk_dynamodb::Client::new(&through);
    let quitter =
        aws_sdk_dynamodb::Client::new(&proxy.sdk_with_timeout(Duration::from_secs(1), 1).await);

    proxy.fail_next("GetItem", Fail::Hang);
    let hung = {
        let (quitter, table) = (quitter.clone(), table.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let out = quitter
                .get_item()
                .table_name(table)
                .key("PK", s("p"))
                .key("SK", s("s"))
                .send()
                .await;
            (started.elapsed(), out)
        })
    };
    while proxy.count("GetItem") == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The proxy holds that request, and answers every other, the same operation's included.
    dynamo
        .put_item()
        .table_name(&table)
        .item("PK", s("p"))
        .item("SK", s("s"))
        .send()
        .await
        .unwrap();
    assert!(get_item(&through, &table, "p", "s").await.is_some());

    let (elapsed, out) = hung.await.unwrap();
    assert!(matches!(out, Err(SdkError::TimeoutError(_))), "{out:?}");
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    // The hung request arrived (and was never forwarded); the next one passes.
    assert_eq!(proxy.count("GetItem"), 2);
    let out = quitter
        .get_item()
        .table_name(&table)
        .key("PK", s("p"))
        .key("SK", s("s"))
        .send()
        .await
        .unwrap();
    assert!(out.item().is_some());
    assert_eq!(
        proxy.calls(),
        ["CreateTable", "GetItem", "PutItem", "GetItem", "GetItem"]
    );
}

#[tokio::test]
async fn a_dropped_call_fails_its_caller_and_is_not_forwarded() {
    let proxy = Proxy::start(&endpoint(), ProxyOptions::default());
    let through = proxy.sdk().await;
    let table = create_table(&through).await;
    let quitter =
        aws_sdk_dynamodb::Client::new(&proxy.sdk_with_timeout(Duration::from_secs(5), 1).await);

    // A dropped PutItem never reaches moto: the item is not written.
    proxy.fail_next("PutItem", Fail::Drop);
    let put = |v: &'static str| {
        quitter
            .put_item()
            .table_name(&table)
            .item("PK", s("p"))
            .item("SK", s("s"))
            .item("v", s(v))
            .send()
    };
    let out = put("dropped").await;
    assert!(matches!(out, Err(SdkError::DispatchFailure(_))), "{out:?}");
    assert_eq!(get_item(&sdk().await, &table, "p", "s").await, None);

    put("kept").await.unwrap();
    assert_eq!(
        get_item(&sdk().await, &table, "p", "s").await.unwrap()["v"],
        "kept"
    );
    assert_eq!(proxy.count("PutItem"), 2);

    // ECS requests fail the same way, and queued faults are used in order.
    let ecs = aws_sdk_ecs::Client::new(&proxy.sdk_with_timeout(Duration::from_secs(5), 1).await);
    proxy.fail_next("ListClusters", Fail::Drop);
    proxy.fail_next("ListClusters", Fail::Drop);
    assert!(ecs.list_clusters().send().await.is_err());
    assert!(ecs.list_clusters().send().await.is_err());
    ecs.list_clusters().send().await.unwrap();
    assert_eq!(proxy.count("ListClusters"), 3);
}
