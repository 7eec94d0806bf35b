//! The OpenAI-compatible judge against a real local server.
#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::time::{Duration, Instant};

use echo4o_core::openai::{ApiKey, OpenAiConfig, OpenAiJudge, RetryPolicy};
use echo4o_core::{ChatMessage, Error, Judge, JudgeRequest, Role};
use echo4o_testutil::{MockReply, MockServer};

fn request() -> JudgeRequest {
    JudgeRequest {
        messages: vec![ChatMessage::text(Role::User, "hello")],
        temperature: Some(0.0),
        max_tokens: Some(10),
    }
}

fn judge(server: &MockServer, timeout_ms: u64, retries: u32) -> OpenAiJudge {
    let config = OpenAiConfig::new("judge-model")
        .with_base_url(server.base_url())
        .with_api_key(ApiKey::new("sk-test"))
        .with_timeout(Duration::from_millis(timeout_ms))
        .with_retry(RetryPolicy {
            max_retries: retries,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_secs(2),
        });
    OpenAiJudge::new(config).unwrap()
}

#[tokio::test]
async fn sends_the_model_and_key_and_reads_text_and_usage() {
    let server = MockServer::start(|_, _| MockReply::content("fine")).await;
    let reply = judge(&server, 5000, 0).complete(&request()).await.unwrap();
    assert_eq!(reply.text, "fine");
    assert_eq!(reply.usage.unwrap().total_tokens, 120);
    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body["model"], "judge-model");
    assert_eq!(seen[0].body["max_tokens"], 10);
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer sk-test"));
}

#[tokio::test]
async fn retries_429_after_the_retry_after_delay_then_succeeds() {
    let server = MockServer::start(|_, n| {
        if n == 0 {
            MockReply::RateLimited { secs: 0.3 }
        } else {
            MockReply::content("ok")
        }
    })
    .await;
    let start = Instant::now();
    let reply = judge(&server, 5000, 3).complete(&request()).await.unwrap();
    assert_eq!(reply.text, "ok");
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn retries_5xx_and_gives_up_with_the_body_after_the_last_retry() {
    let server = MockServer::start(|_, _| MockReply::raw(503, "upstream overloaded")).await;
    let err = judge(&server, 5000, 2)
        .complete(&request())
        .await
        .unwrap_err();
    assert_eq!(server.count(), 3, "one try and two retries");
    match err {
        Error::Http { status, body, .. } => {
            assert_eq!(status, Some(503));
            assert_eq!(body.as_deref(), Some("upstream overloaded"));
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn quota_and_client_errors_are_permanent() {
    let server = MockServer::start(|_, _| {
        MockReply::raw(429, r#"{"error":{"code":"insufficient_quota","message":"You exceeded your current quota"}}"#)
    })
    .await;
    let err = judge(&server, 5000, 5)
        .complete(&request())
        .await
        .unwrap_err();
    assert_eq!(server.count(), 1);
    assert!(err.to_string().contains("insufficient_quota"), "{err}");

    let server = MockServer::start(|_, _| MockReply::raw(400, "bad request")).await;
    judge(&server, 5000, 5)
        .complete(&request())
        .await
        .unwrap_err();
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn a_hang_past_the_timeout_is_retried_then_reported() {
    let server = MockServer::start(|_, n| {
        if n < 2 {
            MockReply::content("late").after(Duration::from_secs(5))
        } else {
            MockReply::content("on time")
        }
    })
    .await;
    let reply = judge(&server, 200, 2).complete(&request()).await.unwrap();
    assert_eq!(reply.text, "on time");
    assert_eq!(server.count(), 3);

    let server =
        MockServer::start(|_, _| MockReply::content("late").after(Duration::from_secs(5))).await;
    let err = judge(&server, 150, 1)
        .complete(&request())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn a_non_json_200_keeps_the_raw_body() {
    let server = MockServer::start(|_, _| MockReply::raw(200, "<html>proxy error</html>")).await;
    let err = judge(&server, 5000, 0)
        .complete(&request())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("<html>proxy error</html>"),
        "{err}"
    );
}

#[tokio::test]
async fn connection_refused_is_reported_with_the_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let judge = OpenAiJudge::new(OpenAiConfig::new("m").with_base_url(&url).with_retry(
        RetryPolicy {
            max_retries: 1,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
    ))
    .unwrap();
    let err = judge.complete(&request()).await.unwrap_err().to_string();
    assert!(err.contains(&url) && err.contains("connect"), "{err}");
}
