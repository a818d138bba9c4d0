//! Tests of the security middleware: each refusal, each thing that must
//! still pass, the rate limiter's arithmetic and its bounded table.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::test::{self, TestRequest};
use serde_json::{json, Value};

use super::*;
use crate::gateway::http::authorize;
use crate::gateway::http::tests::{app, call, call_from, error, get, post};
use crate::gateway::test_support::{harness, Harness};

/// A page the user visits that is not the collector's.
const EVIL: &str = "http://evil.example";
/// The UI's development server, listed in `allowed_origins`.
const UI: &str = "http://localhost:5173";
/// A peer on another machine (TEST-NET-1, RFC 5737).
const REMOTE_PEER: &str = "192.0.2.10:40000";
const TOKEN: &str = "test-token-0123456789";

fn settings(tweak: impl FnOnce(&mut GatewaySettings)) -> Arc<GatewaySettings> {
    let mut settings = GatewaySettings {
        allowed_origins: vec![UI.to_owned()],
        allowed_hosts: vec!["collector.lan".to_owned()],
        ..GatewaySettings::default()
    };
    tweak(&mut settings);
    Arc::new(settings)
}

fn harness_with(tweak: impl FnOnce(&mut GatewaySettings)) -> Harness {
    let mut h = harness();
    h.deps.settings = settings(tweak);
    h
}

fn with_host(req: TestRequest, host: &str) -> TestRequest {
    req.insert_header((header::HOST, host))
}

fn with_origin(req: TestRequest, origin: &str) -> TestRequest {
    req.insert_header((header::ORIGIN, origin))
}

#[actix_web::test]
async fn a_host_that_is_not_ours_is_misdirected() {
    let Harness { deps, control, .. } = harness_with(|_| {});
    let app = app(deps).await;
    for host in [
        "evil.example",
        "evil.example:3000",
        "localhost.evil.example",
        "collector.lan.evil.example",
        "a b",
        "::1",
    ] {
        let message = error(
            &call(&app, with_host(get("/health"), host)).await,
            421,
            "misdirected_request",
        );
        assert!(message.contains("Host"), "{host}: {message}");
    }
    let message = error(
        &call(
            &app,
            with_host(TestRequest::post().uri("/restart"), "evil.example"),
        )
        .await,
        421,
        "misdirected_request",
    );
    assert!(message.contains("allowed_hosts"), "{message}");
    assert!(control.calls().is_empty(), "{:?}", control.calls());

    for host in [
        "localhost",
        "LOCALHOST:3000",
        "127.0.0.1:3000",
        "0.0.0.0:3000",
        "192.168.1.5:3000",
        "[::1]:3000",
        "[::]",
        "collector.lan",
        "Collector.LAN.:8080",
    ] {
        let answer = call(&app, with_host(get("/health"), host)).await;
        assert_eq!(answer, (200, json!({"status": "ok"})), "{host}");
    }
}

#[actix_web::test]
async fn a_foreign_origin_can_neither_mutate_nor_open_the_websocket() {
    let Harness { deps, control, .. } = harness_with(|_| {});
    let app = app(deps).await;
    let from =
        |req: TestRequest, origin: &str| with_origin(with_host(req, "localhost:3000"), origin);

    for origin in [
        EVIL,
        "null",
        "http://localhost:3001",
        "https://localhost:3000",
        "http://localhost:5174",
        "not an origin",
    ] {
        for req in [
            TestRequest::post().uri("/restart"),
            TestRequest::post().uri("/deleteDatabase"),
            post("/toggleExchange", json!({"exchange": "simulated"})),
            TestRequest::delete().uri("/config"),
            get("/ws"),
        ] {
            let message = error(
                &call(&app, from(req, origin)).await,
                403,
                "forbidden_origin",
            );
            assert!(message.contains("allowed_origins"), "{origin}: {message}");
        }
    }
    assert!(control.calls().is_empty(), "{:?}", control.calls());

    // Reads stay open to every page: without CORS headers, the browser
    // keeps a foreign page from reading the answer anyway.
    let response = test::call_service(
        &app,
        from(get("/health"), EVIL)
            .peer_addr(REMOTE_PEER.parse().unwrap())
            .to_request(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(response
        .headers()
        .keys()
        .all(|name| !name.as_str().starts_with("access-control-")));

    // The gateway's own pages, the allowed origin, and clients that send
    // no Origin at all (curl, scripts) may change things.
    for origin in ["http://localhost:3000", "HTTP://LocalHost:3000", UI] {
        let (status, body) = call(&app, from(TestRequest::post().uri("/restart"), origin)).await;
        assert_eq!(status, 200, "{origin}: {body}");
    }
    let (status, body) = call(
        &app,
        with_origin(
            with_host(TestRequest::post().uri("/restart"), "127.0.0.1"),
            "http://127.0.0.1:80",
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&app, TestRequest::post().uri("/restart")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(control.calls(), ["restart"; 5]);
}

#[actix_web::test]
async fn cors_headers_go_to_allowed_origins_only() {
    let Harness { deps, .. } = harness_with(|_| {});
    let app = app(deps).await;
    let preflight = |origin: &str| {
        with_origin(TestRequest::default(), origin)
            .method(actix_web::http::Method::OPTIONS)
            .uri("/config")
            .insert_header((header::ACCESS_CONTROL_REQUEST_METHOD, "POST"))
            .insert_header((
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "authorization, content-type",
            ))
            .to_request()
    };

    let response = test::call_service(&app, preflight(UI)).await;
    assert_eq!(response.status().as_u16(), 204);
    let headers = response.headers();
    assert_eq!(
        headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
        UI
    );
    assert_eq!(headers.get(header::VARY).unwrap(), "Origin");
    let methods = headers
        .get(header::ACCESS_CONTROL_ALLOW_METHODS)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    let allowed = headers
        .get(header::ACCESS_CONTROL_ALLOW_HEADERS)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        allowed.contains("Authorization") && allowed.contains("Content-Type"),
        "{allowed}"
    );

    let response = test::call_service(&app, preflight(EVIL)).await;
    assert_eq!(response.status().as_u16(), 403);
    assert!(response
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_none());
    let body: Value = test::read_body_json(response).await;
    assert_eq!(body["error"]["code"], "forbidden_origin");

    // Answers (errors too) to the allowed origin carry the origin; to any
    // other, nothing.
    for (req, status) in [(get("/health"), 200), (get("/nowhere"), 404)] {
        let response = test::call_service(&app, with_origin(req, UI).to_request()).await;
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(
            response
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .unwrap(),
            UI
        );
        assert_eq!(response.headers().get(header::VARY).unwrap(), "Origin");
    }
    for origin in [EVIL, "http://localhost:3000"] {
        let response =
            test::call_service(&app, with_origin(get("/health"), origin).to_request()).await;
        assert_eq!(response.status().as_u16(), 200);
        assert!(response
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none());
        assert!(response.headers().get(header::VARY).is_none());
    }
}

#[actix_web::test]
async fn form_bodies_are_refused_on_every_mutating_route() {
    let Harness { deps, control, .. } = harness_with(|_| {});
    let app = app(deps).await;
    for content_type in [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain",
        "Text/Plain; charset=utf-8",
    ] {
        for path in ["/restart", "/deleteDatabase", "/config", "/toggleExchange"] {
            let req = TestRequest::post()
                .uri(path)
                .insert_header((header::CONTENT_TYPE, content_type))
                .set_payload(r#"{"exchange":"simulated"}"#);
            let message = error(&call(&app, req).await, 415, "unsupported_media_type");
            assert!(message.contains("application/json"), "{message}");
        }
    }
    assert!(control.calls().is_empty(), "{:?}", control.calls());
    // A POST without a body (and so without a content type) still works,
    // and so does JSON.
    assert_eq!(call(&app, TestRequest::post().uri("/restart")).await.0, 200);
    let toggle = post("/toggleExchange", json!({"exchange": "simulated"}));
    assert_eq!(call(&app, toggle).await.0, 200);
}

#[actix_web::test]
async fn without_a_token_only_loopback_peers_may_change_things() {
    let Harness { deps, control, .. } = harness_with(|_| {});
    let app = app(deps.clone()).await;
    for peer in [REMOTE_PEER, "[2001:db8::1]:40000", "10.0.0.1:1"] {
        for req in [
            TestRequest::post().uri("/restart"),
            TestRequest::post().uri("/deleteDatabase"),
            post("/toggleExchange", json!({"exchange": "simulated"})),
        ] {
            let message = error(&call_from(&app, req, peer).await, 403, "forbidden");
            assert!(
                message.contains("set api_token") && message.contains("loopback"),
                "{message}"
            );
        }
    }
    // A peer the server cannot name counts as remote.
    let response = test::call_service(&app, TestRequest::post().uri("/restart").to_request()).await;
    assert_eq!(response.status().as_u16(), 403);
    // Reads stay open to remote peers.
    assert_eq!(call_from(&app, get("/status"), REMOTE_PEER).await.0, 200);
    assert_eq!(control.calls(), ["status"]);

    // Loopback in every spelling may.
    for peer in [
        "127.0.0.1:1",
        "127.8.9.10:1",
        "[::1]:1",
        "[::ffff:127.0.0.1]:1",
    ] {
        let answer = call_from(&app, TestRequest::post().uri("/restart"), peer).await;
        assert_eq!(answer.0, 200, "{peer}: {answer:?}");
    }

    // With a token, the token decides, wherever the peer is.
    control.set_token(Some(TOKEN));
    let req = TestRequest::post()
        .uri("/restart")
        .insert_header((header::AUTHORIZATION, format!("Bearer {TOKEN}")));
    assert_eq!(call_from(&app, req, REMOTE_PEER).await.0, 200);
    let answer = call_from(&app, TestRequest::post().uri("/restart"), REMOTE_PEER).await;
    error(&answer, 401, "unauthorized");
}

/// The WebSocket's `reload` goes through the same check with the
/// session's peer.
#[actix_web::test]
async fn authorize_refuses_remote_peers_without_a_token_and_unknown_ones() {
    let Harness { deps, control, .. } = harness_with(|_| {});
    let remote = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
    let refused = authorize(&deps, None, remote, "the reload command", "hint")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "forbidden");
    assert_eq!(
        refused.message(),
        "the reload command from 192.0.2.10 refused: without an api_token, changes are \
         accepted only from this machine (loopback); set api_token in the config file to \
         allow remote control"
    );
    let unknown = authorize(&deps, None, None, "the reload command", "hint")
        .await
        .unwrap_err();
    assert!(
        unknown.message().contains("an unknown address"),
        "{unknown}"
    );
    let local = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(authorize(&deps, None, local, "x", "hint").await, Ok(()));
    control.set_token(Some(TOKEN));
    assert_eq!(
        authorize(&deps, Some(TOKEN.as_bytes()), remote, "x", "hint").await,
        Ok(())
    );
}

#[actix_web::test]
async fn each_address_is_rate_limited_with_a_retry_after() {
    let Harness { deps, .. } = harness_with(|s| s.rate_limit = 1);
    let limited = app(deps).await;
    let svc = &limited;
    // A burst of twice the rate passes.
    for _ in 0..2 {
        assert_eq!(call_from(svc, get("/health"), REMOTE_PEER).await.0, 200);
    }
    let response = test::call_service(
        svc,
        get("/health")
            .peer_addr(REMOTE_PEER.parse().unwrap())
            .to_request(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 429);
    let retry: u64 = response
        .headers()
        .get(header::RETRY_AFTER)
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry, 1);
    let body: Value = test::read_body_json(response).await;
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(
        body["error"]["message"],
        "too many requests from this address (rate_limit in the config file); retry in 1 s"
    );
    // The upgrade counts as a request like any other.
    let answer = call_from(svc, get("/ws"), REMOTE_PEER).await;
    error(&answer, 429, "rate_limited");
    // Other addresses have buckets of their own.
    assert_eq!(call_from(svc, get("/health"), "192.0.2.11:1").await.0, 200);

    // 0 disables the limit.
    let Harness { deps, .. } = harness_with(|s| s.rate_limit = 0);
    let unlimited = app(deps).await;
    for _ in 0..50 {
        assert_eq!(
            call_from(&unlimited, get("/health"), REMOTE_PEER).await.0,
            200
        );
    }
}

#[test]
fn buckets_refill_at_the_rate_up_to_twice_it() {
    assert!(RateLimiter::new(0).is_none());
    let limiter = RateLimiter::new(10).unwrap();
    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let start = Instant::now();
    for _ in 0..20 {
        assert_eq!(limiter.take(ip, start), Ok(()));
    }
    assert_eq!(limiter.take(ip, start), Err(1));
    // A tenth of a second gives one token back, no more.
    let later = start + Duration::from_millis(100);
    assert_eq!(limiter.take(ip, later), Ok(()));
    assert_eq!(limiter.take(ip, later), Err(1));
    // A long pause refills to the burst, not beyond.
    let much_later = later + Duration::from_secs(3600);
    for _ in 0..20 {
        assert_eq!(limiter.take(ip, much_later), Ok(()));
    }
    assert!(limiter.take(ip, much_later).is_err());
    // A slow rate tells a longer wait.
    let slow = RateLimiter::new(1).unwrap();
    for _ in 0..2 {
        assert_eq!(slow.take(ip, start), Ok(()));
    }
    assert_eq!(slow.take(ip, start), Err(1));
}

#[test]
fn the_table_of_addresses_stays_bounded() {
    let limiter = RateLimiter::new(1).unwrap();
    let start = Instant::now();
    let ip = |i: usize| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32));
    for i in 0..MAX_TRACKED_CLIENTS + 100 {
        assert_eq!(limiter.take(ip(i), start), Ok(()));
        assert!(limiter.tracked() <= MAX_TRACKED_CLIENTS);
    }
    assert_eq!(limiter.tracked(), MAX_TRACKED_CLIENTS);
    // Once the buckets are full again, one new address sweeps them all.
    let idle = start + Duration::from_secs(10);
    assert_eq!(limiter.take(ip(usize::MAX >> 40), idle), Ok(()));
    assert_eq!(limiter.tracked(), 1);
}

#[test]
fn ipv6_clients_share_a_bucket_per_64_and_mapped_ipv4_is_ipv4() {
    let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
    let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(client_key(a), client_key(b));
    assert_ne!(client_key(a), client_key(other));
    let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
    assert_eq!(client_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    assert!(is_local(Some("::ffff:127.0.0.1".parse().unwrap())));
    assert!(!is_local(Some("192.0.2.1".parse().unwrap())));
    assert!(!is_local(None));
}

#[actix_web::test]
async fn faults_cannot_be_changed_through_post_config() {
    let Harness { deps, control, .. } = harness_with(|_| {});
    let app = app(deps).await;
    let (_, config) = call(&app, get("/config")).await;

    let mut faulty = config.clone();
    faulty["exchanges"]["simulated"]["simulation"] =
        json!({"faults": {"panic_after_updates": 10, "repeat": true}});
    let message = error(
        &call(&app, post("/config", faulty)).await,
        400,
        "faults_not_settable",
    );
    assert!(
        message.starts_with("exchanges.simulated.simulation.faults:")
            && message.contains("config file"),
        "{message}"
    );
    assert!(
        !control
            .calls()
            .iter()
            .any(|c| c.starts_with("replace_config")),
        "{:?}",
        control.calls()
    );

    // Everything else of the simulation may change, and a config that
    // keeps the faults it runs with (none here, spelt `{}`) passes.
    let mut other = config.clone();
    other["exchanges"]["simulated"]["simulation"] = json!({"updates_per_second": 5, "faults": {}});
    let (status, body) = call(&app, post("/config", other)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&app, post("/config", config)).await;
    assert_eq!(status, 200, "{body}");
}

#[test]
fn settings_come_from_the_config() {
    let config = Config::from_json(
        r#"{"exchanges":{},"allowed_origins":["http://localhost:5173"],
            "allowed_hosts":["collector.lan"],"rate_limit":7,"max_clients":3}"#,
    )
    .unwrap();
    assert_eq!(
        GatewaySettings::from_config(&config),
        GatewaySettings {
            allowed_origins: vec![UI.into()],
            allowed_hosts: vec!["collector.lan".into()],
            rate_limit: 7,
            max_clients: 3,
        }
    );
    let defaults = Config::from_json(r#"{"exchanges":{}}"#).unwrap();
    assert_eq!(
        GatewaySettings::from_config(&defaults),
        GatewaySettings::default()
    );
    assert_eq!(
        GatewaySettings::default().changed_keys(&GatewaySettings::from_config(&config)),
        [
            "allowed_origins",
            "allowed_hosts",
            "rate_limit",
            "max_clients"
        ]
    );
    assert!(GatewaySettings::default()
        .changed_keys(&GatewaySettings::default())
        .is_empty());
}
