//! The OpenAI-compatible images client against a real local server: generations, multipart
//! edits, refusals, rate limits and quota errors.
#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::time::Duration;

use base64::Engine as _;
use echo4o_core::openai::images::{
    FailureKind, ImageOptions, ImagesClient, ImagesConfig, Profile, ReferenceImage,
};
use echo4o_core::openai::{ApiKey, RetryPolicy};
use echo4o_core::{GenerationRequest, Generator};
use echo4o_testutil::{MockReply, MockServer};
use image::{Rgb, RgbImage};
use serde_json::json;

fn png(color: [u8; 3]) -> Vec<u8> {
    echo4o_core::encode_image(
        &RgbImage::from_pixel(8, 8, Rgb(color)),
        image::ImageFormat::Png,
    )
    .unwrap()
}

fn images_reply(n: usize) -> MockReply {
    let b64 = base64::engine::general_purpose::STANDARD.encode(png([200, 10, 10]));
    let data: Vec<_> = (0..n)
        .map(|_| json!({"b64_json": b64, "revised_prompt": "a red square, revised"}))
        .collect();
    MockReply::json(json!({"created": 1_700_000_000, "data": data,
        "usage": {"input_tokens": 30, "output_tokens": 272,
                  "input_tokens_details": {"text_tokens": 30, "image_tokens": 0}}}))
    .with_header("x-request-id", "req_123")
}

fn client(server: &MockServer, profile: Profile, retries: u32) -> ImagesClient {
    ImagesClient::new(
        ImagesConfig::new("gpt-image-test")
            .with_base_url(server.base_url())
            .with_api_key(ApiKey::new("sk-test"))
            .with_profile(profile)
            .with_timeout(Duration::from_millis(800))
            .with_retry(RetryPolicy {
                max_retries: retries,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_secs(2),
            }),
    )
    .unwrap()
}

#[tokio::test]
async fn generations_send_json_and_read_images_usage_and_request_id() {
    let server = MockServer::start(|_, _| images_reply(2)).await;
    let options = ImageOptions {
        size: Some("1024x1024".into()),
        n: Some(2),
        quality: Some("low".into()),
        seed: Some(3),
        ..Default::default()
    };
    let reply = client(&server, Profile::OpenAi, 0)
        .create("a red square", &[], &options)
        .await
        .unwrap();
    assert_eq!(reply.images.len(), 2);
    assert_eq!(reply.images[0], png([200, 10, 10]));
    assert_eq!(
        reply.revised_prompts[1].as_deref(),
        Some("a red square, revised")
    );
    assert_eq!(reply.request_id.as_deref(), Some("req_123"));
    assert_eq!(reply.usage.unwrap()["output_tokens"], 272);
    assert_eq!(reply.omitted, ["seed"], "OpenAI has no seed");
    let seen = server.requests();
    assert_eq!(seen[0].path, "/v1/images/generations");
    assert_eq!(
        seen[0].body,
        json!({"model": "gpt-image-test", "n": 2, "size": "1024x1024", "quality": "low", "prompt": "a red square"})
    );
}

#[tokio::test]
async fn references_go_as_repeated_image_parts_of_a_multipart_edit() {
    let server = MockServer::start(|_, _| images_reply(1)).await;
    let refs: Vec<_> = (0..3)
        .map(|i| ReferenceImage {
            name: format!("ref{i}.png"),
            bytes: png([10 * i as u8, 0, 0]),
        })
        .collect();
    let reply = client(&server, Profile::OpenAi, 0)
        .create(
            "put the person of image 1 in the scene of image 3",
            &refs,
            &ImageOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(reply.endpoint, "edits");
    let seen = &server.requests()[0];
    assert_eq!(seen.path, "/v1/images/edits");
    assert!(
        seen.content_type
            .as_deref()
            .unwrap()
            .starts_with("multipart/form-data")
    );
    let body = seen.body.as_str().unwrap();
    assert_eq!(body.matches("name=\"image[]\"").count(), 3);
    assert!(body.contains("filename=\"ref2.png\""));
    assert!(body.contains("name=\"model\"\r\n\r\ngpt-image-test"));
    assert!(body.contains("put the person of image 1"));
}

#[tokio::test]
async fn a_moderation_refusal_is_classified_and_not_retried() {
    let server = MockServer::start(|_, _| {
        MockReply::raw(
            400,
            r#"{"error":{"message":"Your request was rejected by the safety system.","type":"image_generation_user_error","code":"moderation_blocked"}}"#,
        )
    })
    .await;
    let err = client(&server, Profile::OpenAi, 3)
        .create("something", &[], &ImageOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Refused);
    assert_eq!(err.status, Some(400));
    assert!(err.body.unwrap().contains("moderation_blocked"));
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn rate_limits_are_retried_after_retry_after_and_quota_stops() {
    let server = MockServer::start(|_, n| {
        if n < 2 {
            MockReply::RateLimited { secs: 0.05 }
        } else {
            images_reply(1)
        }
    })
    .await;
    let reply = client(&server, Profile::OpenAi, 3)
        .create("x", &[], &ImageOptions::default())
        .await
        .unwrap();
    assert_eq!(reply.attempts, 3);

    let server = MockServer::start(|_, _| {
        MockReply::raw(
            429,
            r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#,
        )
    })
    .await;
    let err = client(&server, Profile::OpenAi, 3)
        .create("x", &[], &ImageOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Quota);
    assert!(err.kind.stops_job());
    assert_eq!(server.count(), 1, "a quota error is permanent");
}

#[tokio::test]
async fn timeouts_are_not_retried_by_default_and_raw_error_bodies_are_kept() {
    let server = MockServer::start(|_, _| images_reply(1).after(Duration::from_millis(3000))).await;
    let err = client(&server, Profile::SdCpp, 3)
        .create("x", &[], &ImageOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Retryable);
    assert!(err.message.contains("billed"), "{}", err.message);
    assert_eq!(server.count(), 1);

    let server = MockServer::start(|_, _| MockReply::raw(400, r#"{"error":"bad size 7x7"}"#)).await;
    let err = client(&server, Profile::SdCpp, 3)
        .create("x", &[], &ImageOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Permanent);
    assert_eq!(err.body.as_deref(), Some(r#"{"error":"bad size 7x7"}"#));
}

#[tokio::test]
async fn the_client_is_a_generator() {
    let server = MockServer::start(|_, _| images_reply(1)).await;
    let generator = client(&server, Profile::VllmOmni, 0);
    let images = generator
        .generate(
            &GenerationRequest::new("1", "a red square")
                .with_size(8, 8)
                .with_seed(5),
        )
        .await
        .unwrap();
    assert_eq!(images[0].get_pixel(0, 0), &Rgb([200, 10, 10]));
    let body = &server.requests()[0].body;
    assert_eq!(body["seed"], 5);
    assert_eq!(body["size"], "8x8");
}
