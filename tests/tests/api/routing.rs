//! Live events reach exactly the streams that may see them, and wake no
//! other: organization members, a project's members, a portal admin, before
//! and after their permissions change. Deliveries are counted by the api's
//! own metric (one per event and stream woken), so a stream woken for an
//! event it may not see shows even when it then sends nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use oec_common::events::{Envelope, EnvironmentStatusChanged, Event, Publisher};
use oec_common::model::EnvironmentStatus;
use oec_tests::TestApp;
use oec_tests::stack::{SseClient, SseMessage};
use serde_json::json;
use uuid::Uuid;

/// A series' value in this process's metrics (the api runs in it), 0 when absent.
fn metric(series: &str) -> f64 {
    oec_common::metrics::render()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn delivered() -> f64 {
    metric("oec_sse_events_fanned_out_total")
}

fn unsent() -> f64 {
    ["replayed", "rescoping", "scope"]
        .iter()
        .map(|r| metric(&format!("oec_sse_events_unsent_total{{reason=\"{r}\"}}")))
        .sum()
}

struct Tenants {
    app: TestApp,
    publisher: Publisher,
}

impl Tenants {
    async fn org(&self, slug: &str) -> Uuid {
        let r = self
            .app
            .post(
                "/api/v1/organizations",
                &self.app.admin_token,
                json!({"name": slug, "slug": slug}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.id()
    }

    async fn project(&self, org: Uuid, slug: &str) -> Uuid {
        let r = self
            .app
            .post(
                "/api/v1/projects",
                &self.app.admin_token,
                json!({"organization_id": org, "name": slug, "slug": slug,
                       "git_url": "https://git.example.com/acme/p.git", "git_branch": "main"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.id()
    }

    async fn member(&self, path: String, user: Uuid, role: &str) {
        let r = self
            .app
            .post(
                &path,
                &self.app.admin_token,
                json!({"user_id": user, "role": role}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }

    async fn stream(&self, token: &str) -> SseClient {
        let mut s = SseClient::connect(
            &self
                .app
                .url(&format!("/api/v1/events/stream?token={token}")),
            None,
        )
        .await;
        assert_eq!(s.status, 200);
        let first = s.next(Duration::from_secs(5)).await.expect("connected");
        assert_eq!(first.event.as_deref(), Some("connected"));
        s
    }

    /// Publishes an `environment_status` of (org, project) naming environment `n`.
    async fn publish(&self, org: Uuid, project: Uuid, n: u128) {
        let event = Event::EnvironmentStatus(EnvironmentStatusChanged {
            environment_id: Uuid::from_u128(n),
            project_id: project,
            deployment_id: None,
            status: EnvironmentStatus::Running,
        });
        self.publisher
            .publish(&Envelope::new(org, event))
            .await
            .expect("publish");
    }
}

/// The environment numbers of the `environment_status` events in `frames`.
fn numbers(frames: &[SseMessage]) -> BTreeSet<u128> {
    frames
        .iter()
        .filter(|m| m.event.as_deref() == Some("environment_status"))
        .map(|m| {
            let id: Uuid = m.json()["data"]["environment_id"]
                .as_str()
                .expect("id")
                .parse()
                .expect("uuid");
            id.as_u128()
        })
        .collect()
}

/// Events read until environment `fence` (included).
async fn until_fence(s: &mut SseClient, fence: u128) -> Vec<SseMessage> {
    let frames = s
        .until(Duration::from_secs(10), |m| {
            m.data.contains(&Uuid::from_u128(fence).to_string())
        })
        .await;
    assert!(
        numbers(&frames).contains(&fence),
        "no fence {fence}: {frames:?}"
    );
    frames
}

/// Event frames (not comments) in `frames`.
fn events(frames: &[SseMessage]) -> usize {
    frames.iter().filter(|m| m.event.is_some()).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_stream_gets_exactly_what_its_user_may_see_and_no_other_is_woken() {
    let app = TestApp::spawn_with(&[("OEC_SSE_KEEPALIVE_SECS", "3600")]).await;
    let pool = deadpool_redis::Config::from_url(oec_tests::redis_url())
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .expect("redis pool");
    let publisher = Publisher::new(pool, &app.settings.redis_prefix, 10_000);
    let t = Tenants { app, publisher };

    let (a, b, c) = (
        t.org("org-a").await,
        t.org("org-b").await,
        t.org("org-c").await,
    );
    let pa = t.project(a, "pa").await;
    let (pb, pb2) = (t.project(b, "pb").await, t.project(b, "pb2").await);
    let pc = t.project(c, "pc").await;
    // An organization admin of a, a viewer of b's pb only (b's member
    // without organization-wide access), an admin of c.
    let (ua, ta) = t.app.user("ua").await;
    let (ub, tb) = t.app.user("ub").await;
    let (uc, tc) = t.app.user("uc").await;
    t.member(format!("/api/v1/organizations/{a}/members"), ua, "admin")
        .await;
    t.member(format!("/api/v1/organizations/{b}/members"), ub, "member")
        .await;
    t.member(format!("/api/v1/projects/{pb}/members"), ub, "viewer")
        .await;
    t.member(format!("/api/v1/organizations/{c}/members"), uc, "admin")
        .await;
    // Many streams of other tenants, on every thread: never woken.
    let mut idle = Vec::new();
    let mut idle_orgs = Vec::new();
    for i in 0..20 {
        let (u, token) = t.app.user(&format!("idle{i}")).await;
        let org = t.org(&format!("idle-{i}")).await;
        t.member(format!("/api/v1/organizations/{org}/members"), u, "admin")
            .await;
        idle.push(t.stream(&token).await);
        idle_orgs.push(org);
    }
    let mut sa = t.stream(&ta).await;
    let mut sb = t.stream(&tb).await;
    let mut sc = t.stream(&tc).await;
    let mut admin = t.stream(&t.app.admin_token).await;
    // The memberships' own permissions_changed may reach the api after a
    // stream opened: a fence in each stream's organization, published
    // after them, is read before counting starts.
    for (i, org) in idle_orgs.iter().enumerate() {
        t.publish(*org, Uuid::new_v4(), 9_000 + i as u128).await;
    }
    t.publish(a, pa, 7).await;
    t.publish(b, pb, 8).await;
    t.publish(c, pc, 9).await;
    for (i, s) in idle.iter_mut().enumerate() {
        until_fence(s, 9_000 + i as u128).await;
    }
    until_fence(&mut sa, 7).await;
    until_fence(&mut sb, 8).await;
    until_fence(&mut sc, 9).await;
    until_fence(&mut admin, 9).await;
    let (delivered_before, unsent_before) = (delivered(), unsent());

    for round in 0..5u128 {
        t.publish(a, pa, 100 + round).await;
        t.publish(b, pb, 200 + round).await;
        t.publish(b, pb2, 300 + round).await;
        t.publish(c, pc, 400 + round).await;
    }
    // Fences: each stream reads until one it may see (the admin sees all).
    t.publish(a, pa, 1).await;
    t.publish(b, pb, 2).await;
    t.publish(c, pc, 3).await;
    let fa = until_fence(&mut sa, 1).await;
    let fb = until_fence(&mut sb, 2).await;
    let fc = until_fence(&mut sc, 3).await;
    let fadmin = until_fence(&mut admin, 3).await;
    let set = |base: u128, fence: u128| -> BTreeSet<u128> {
        (0..5).map(|r| base + r).chain([fence]).collect()
    };
    assert_eq!(numbers(&fa), set(100, 1));
    assert_eq!(numbers(&fb), set(200, 2));
    assert_eq!(numbers(&fc), set(400, 3));
    let all: BTreeSet<u128> = [100, 200, 300, 400]
        .iter()
        .flat_map(|&b| b..b + 5)
        .chain([1, 2, 3])
        .collect();
    assert_eq!(numbers(&fadmin), all);

    // Added to pb2 as a viewer: ua's stream hears of it and follows at once.
    t.member(format!("/api/v1/projects/{pb2}/members"), ua, "viewer")
        .await;
    let heard = sa
        .until(Duration::from_secs(5), |m| {
            m.event.as_deref() == Some("permissions_changed")
        })
        .await;
    assert_eq!(events(&heard), 1, "{heard:?}");
    // Removed from pb: ub's stream hears of it and sees nothing of b any more.
    let r = t
        .app
        .delete(
            &format!("/api/v1/projects/{pb}/members/{ub}"),
            &t.app.admin_token,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let heard_b = sb
        .until(Duration::from_secs(5), |m| {
            m.event.as_deref() == Some("permissions_changed")
        })
        .await;
    assert_eq!(events(&heard_b), 1, "{heard_b:?}");
    let heard_admin = admin.until(Duration::from_millis(300), |_| false).await;

    t.publish(b, pb, 500).await;
    t.publish(b, pb2, 600).await;
    t.publish(a, pa, 4).await;
    t.publish(c, pc, 5).await;
    let ga = until_fence(&mut sa, 4).await;
    assert_eq!(numbers(&ga), BTreeSet::from([600, 4]), "pb2 now, not pb");
    let gc = until_fence(&mut sc, 5).await;
    let gadmin = until_fence(&mut admin, 5).await;
    assert_eq!(numbers(&gadmin), BTreeSet::from([500, 600, 4, 5]));
    // ub's thread has routed everything once every other stream has its
    // fence and a moment has passed; ub got nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gb = sb.until(Duration::from_millis(100), |_| false).await;
    assert_eq!(events(&gb), 0, "{gb:?}");
    for s in &mut idle {
        let got = s.until(Duration::from_millis(10), |_| false).await;
        assert_eq!(events(&got), 0, "an idle tenant's stream got {got:?}");
    }

    // Every delivery the api counted is an event some stream sent: none
    // was handed to a stream that may not see it.
    let sent: usize = [
        &fa,
        &fb,
        &fc,
        &fadmin,
        &heard,
        &heard_b,
        &heard_admin,
        &ga,
        &gc,
        &gadmin,
    ]
    .iter()
    .map(|f| events(f))
    .sum();
    assert_eq!(delivered() - delivered_before, sent as f64);
    assert_eq!(unsent() - unsent_before, 0.0);
}
