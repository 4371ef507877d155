//! The two event-stream endpoints: `/events/stream` (every event the caller
//! may see, resumable with `Last-Event-ID` from the replay stream) and
//! `/deployments/{id}/events` (one deployment's story from PostgreSQL, then
//! live). They read the process's fan-out in `hub.rs`; each stream holds a
//! [`Lease`] and follows its user's permissions while open.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, Responder, web};
use actix_web_lab::sse;
use oec_common::db;
use oec_common::events::{PERMISSIONS_CHANGED, is_after, parse_id};
use serde_json::json;
use tokio::sync::broadcast;
use tokio::time::{Instant, Interval};
use uuid::Uuid;

use crate::errors::ApiError;
use crate::extract::{AuthUser, SseUser};
use crate::hub::{LocalHub, Prepared, REPLAY_BATCH, Relayed, StreamCounts, StreamSlot, keepalive};
use crate::state::AppState;

/// What every stream holds besides its events: its place among the open
/// streams and the moment its token expires (the stream ends then; the
/// client reconnects with a fresh token and `Last-Event-ID`).
struct Lease {
    _slot: StreamSlot,
    expiry: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Lease {
    fn take(state: &AppState, req: &HttpRequest, user: &AuthUser) -> Result<Lease, ApiError> {
        let slot = StreamCounts::take(
            &state.streams,
            &state.settings,
            user.id,
            req.peer_addr().map(|a| a.ip()),
        )?;
        let left = user.token_exp - chrono::Utc::now().timestamp();
        let at = Instant::now() + Duration::from_secs(left.max(0) as u64);
        Ok(Lease {
            _slot: slot,
            expiry: Box::pin(tokio::time::sleep_until(at)),
        })
    }
}

/// Whether a `permissions_changed` event may change what `user` sees.
fn concerns(p: &Prepared, user: Uuid, scope: &Scope) -> bool {
    p.event.kind == PERMISSIONS_CHANGED
        && match p.event.user_id() {
            Some(u) => u == user,
            None => scope.covers(p.event.org_id, p.project),
        }
}

/// Which events a client may receive.
struct Scope {
    all: bool,
    user: Option<Uuid>,
    orgs: HashSet<Uuid>,
    projects: HashSet<Uuid>,
}

impl Scope {
    async fn load(state: &AppState, user: &AuthUser) -> Result<Scope, ApiError> {
        if user.portal_admin {
            return Ok(Scope {
                all: true,
                user: Some(user.id),
                orgs: HashSet::new(),
                projects: HashSet::new(),
            });
        }
        let (orgs, projects) = db::access::event_scopes(&state.pool, user.id).await?;
        Ok(Scope {
            all: false,
            user: Some(user.id),
            orgs: orgs.into_iter().collect(),
            projects: projects.into_iter().collect(),
        })
    }

    fn covers(&self, org: Uuid, project: Option<Uuid>) -> bool {
        self.all
            || self.orgs.contains(&org)
            || project.is_some_and(|id| self.projects.contains(&id))
    }

    fn allows(&self, p: &Prepared) -> bool {
        self.allows_routing(p.event.org_id, p.project, &p.event.kind, p.event.user_id())
    }

    /// `permissions_changed` goes to the user it names only; every other
    /// event to whoever may see its organization or project.
    fn allows_routing(
        &self,
        org: Uuid,
        project: Option<Uuid>,
        kind: &str,
        user: Option<Uuid>,
    ) -> bool {
        if kind == PERMISSIONS_CHANGED {
            return user.is_some() && user == self.user;
        }
        self.covers(org, project)
    }
}

/// The user's current scope, or `None` when the user or the token's session
/// is gone.
async fn rescope(state: &AppState, user: &mut AuthUser) -> Result<Option<Scope>, ApiError> {
    let Some(row) = db::users::by_session(&state.pool, user.id, user.session).await? else {
        return Ok(None);
    };
    user.portal_admin = row.is_portal_admin;
    Scope::load(state, user).await.map(Some)
}

/// The `Last-Event-ID` header, when present and not empty, parsed by
/// `parse` (the endpoint's id scheme); one that does not parse is a 400
/// naming the scheme, not a silent restart from nothing.
fn last_event_id<T>(
    req: &HttpRequest,
    parse: impl Fn(&str) -> Option<T>,
    scheme: &str,
) -> Result<Option<T>, ApiError> {
    let Some(v) = req.headers().get("Last-Event-ID") else {
        return Ok(None);
    };
    let v = v.to_str().unwrap_or("\u{fffd}").trim();
    if v.is_empty() {
        return Ok(None);
    }
    parse(v).map(Some).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_last_event_id",
            format!("Last-Event-ID must be {scheme}, as sent in this stream's `id:` lines."),
        )
    })
}

fn connected() -> sse::Event {
    sse::Event::Data(sse::Data::new(json!({"status": "connected"}).to_string()).event("connected"))
}

fn respond<S>(stream: S) -> impl Responder
where
    S: futures_util::Stream<Item = Result<sse::Event, Infallible>> + 'static,
{
    sse::Sse::from_stream(stream)
        .customize()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
}

struct StreamState {
    state: web::Data<AppState>,
    user: AuthUser,
    lease: Lease,
    rx: broadcast::Receiver<Relayed>,
    scope: Scope,
    replay: VecDeque<Prepared>,
    replayed_up_to: Option<String>,
    /// A `permissions_changed` about this stream, met while batching frames.
    control: Option<Arc<Prepared>>,
    connected: bool,
    done: bool,
}

/// `GET /api/v1/events/stream`: every event the caller may see.
pub async fn events_stream(
    state: web::Data<AppState>,
    local: web::Data<LocalHub>,
    req: HttpRequest,
    SseUser(user): SseUser,
) -> Result<actix_web::HttpResponse, ApiError> {
    let lease = Lease::take(&state, &req, &user)?;
    let scope = Scope::load(&state, &user).await?;
    // Subscribe before reading the replay, so nothing falls in between.
    let rx = local.subscribe();
    let mut replay = VecDeque::new();
    let mut replayed_up_to = None;
    let resume = last_event_id(
        &req,
        |v| parse_id(v).map(|_| v.to_owned()),
        "a stream id `{milliseconds}-{sequence}`",
    )?;
    if let Some(last) = resume {
        // Few resumes read at once, each in batches, keeping only what the
        // caller may see: a resume costs what it delivers, not the stream.
        let _permit = state
            .replays
            .acquire()
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
        let (missed, up_to) = state
            .publisher
            .replay_filtered(&last, state.settings.event_replay_max, REPLAY_BATCH, |r| {
                scope.allows_routing(r.org_id, r.data.project_id, &r.kind, r.data.user_id)
            })
            .await
            .map_err(ApiError::Internal)?;
        replayed_up_to = Some(up_to.unwrap_or(last));
        replay = missed.into_iter().map(Prepared::new).collect();
    }
    let st = StreamState {
        state: state.clone(),
        user,
        lease,
        rx,
        scope,
        replay,
        replayed_up_to,
        control: None,
        connected: false,
        done: false,
    };
    // Frames are pre-encoded once per event (see `Prepared`); a client that
    // has several waiting gets them in one write.
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        if !st.connected {
            st.connected = true;
            return Some((Ok::<_, Infallible>(web::Bytes::from_static(CONNECTED)), st));
        }
        if let Some(p) = st.replay.pop_front() {
            return Some((Ok(p.frame.clone()), st));
        }
        loop {
            if let Some(p) = st.control.take() {
                match st.apply_permissions(&p).await {
                    Some(frame) => return Some((Ok(frame), st)),
                    None if st.done => return Some((Ok(web::Bytes::from_static(REVOKED)), st)),
                    None => continue,
                }
            }
            let received = tokio::select! {
                r = st.rx.recv() => r,
                () = &mut st.lease.expiry => {
                    st.done = true;
                    return Some((Ok(web::Bytes::from_static(EXPIRED)), st));
                }
            };
            match received {
                Ok(Relayed::Keepalive) => {
                    return Some((Ok(web::Bytes::from_static(KEEPALIVE)), st));
                }
                Ok(Relayed::Event(p)) => {
                    if concerns(&p, st.user.id, &st.scope) {
                        st.control = Some(p);
                        continue;
                    }
                    if !st.wants(&p) {
                        continue;
                    }
                    // The common case, one frame: share it, no copy. Only
                    // a client with more waiting gets them joined.
                    let mut out: Option<web::BytesMut> = None;
                    for _ in 0..63 {
                        let more: &[u8] = match st.rx.try_recv() {
                            Ok(Relayed::Event(q)) if concerns(&q, st.user.id, &st.scope) => {
                                // Handled before anything later is sent.
                                st.control = Some(q);
                                break;
                            }
                            Ok(Relayed::Event(q)) if st.wants(&q) => {
                                out.get_or_insert_with(|| web::BytesMut::from(&p.frame[..]))
                                    .extend_from_slice(&q.frame);
                                continue;
                            }
                            Ok(Relayed::Event(_) | Relayed::Keepalive) => continue,
                            Ok(Relayed::Lost) | Err(broadcast::error::TryRecvError::Lagged(_)) => {
                                st.done = true;
                                LAGGED
                            }
                            Err(_) => break,
                        };
                        out.get_or_insert_with(|| web::BytesMut::from(&p.frame[..]))
                            .extend_from_slice(more);
                        break;
                    }
                    let chunk = match out {
                        Some(b) => b.freeze(),
                        None => p.frame.clone(),
                    };
                    return Some((Ok(chunk), st));
                }
                Ok(Relayed::Lost) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Too slow for the shared buffer: disconnect; the client resumes.
                    st.done = true;
                    return Some((Ok(web::Bytes::from_static(LAGGED)), st));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(actix_web::HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}

const CONNECTED: &[u8] = b"event: connected\ndata: {\"status\":\"connected\"}\n\n";
const KEEPALIVE: &[u8] = b": keepalive\n\n";
const LAGGED: &[u8] = b": lagged; reconnect with Last-Event-ID\n\n";
const EXPIRED: &[u8] = b": token expired; reconnect with a fresh token and Last-Event-ID\n\n";
const REVOKED: &[u8] = b": access revoked\n\n";

impl StreamState {
    fn wants(&self, p: &Prepared) -> bool {
        self.scope.allows(p) && is_after(&p.event.id, self.replayed_up_to.as_deref())
    }

    /// Re-reads the user's scope after a `permissions_changed`: the event's
    /// frame when it is about this user; `done` when the user is gone.
    async fn apply_permissions(&mut self, p: &Prepared) -> Option<web::Bytes> {
        match rescope(&self.state, &mut self.user).await {
            Ok(Some(scope)) => self.scope = scope,
            Ok(None) => {
                self.done = true;
                return None;
            }
            Err(e) => {
                // Fail closed: the client reconnects and is checked anew.
                tracing::warn!(error = %e, user = %self.user.id, "re-checking a stream's permissions failed");
                self.done = true;
                return None;
            }
        }
        self.wants(p).then(|| p.frame.clone())
    }
}

enum Phase {
    Backlog,
    Live,
    Finished,
}

struct DeploymentStream {
    state: web::Data<AppState>,
    user: AuthUser,
    lease: Lease,
    deployment: Uuid,
    rx: broadcast::Receiver<Arc<Prepared>>,
    last_seq: i64,
    queue: VecDeque<sse::Event>,
    phase: Phase,
    tick: Interval,
}

impl DeploymentStream {
    /// Whether the user (re-read, their session still live) may still view
    /// the deployment.
    async fn still_allowed(&mut self) -> bool {
        match db::users::by_session(&self.state.pool, self.user.id, self.user.session).await {
            Ok(Some(row)) => self.user.portal_admin = row.is_portal_admin,
            _ => return false,
        }
        crate::access::deployment(
            &self.state,
            &self.user,
            self.deployment,
            oec_common::auth::Permission::ProjectDeploymentsView,
        )
        .await
        .is_ok()
    }
}

fn log_event(deployment: Uuid, l: &db::deployments::LogLine) -> sse::Event {
    let body = json!({"type": "deployment_progress", "data": {
        "deployment_id": deployment, "seq": l.seq, "step": l.step, "level": l.level,
        "message": l.message, "timestamp": l.timestamp, "data": l.data}});
    sse::Event::Data(
        sse::Data::new(body.to_string())
            .event("deployment_progress")
            .id(l.seq.to_string()),
    )
}

/// `GET /api/v1/deployments/{id}/events`: the stored log lines (after
/// `Last-Event-ID`), then live lines, then `deployment_finished`.
pub async fn deployment_events(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<Uuid>,
    SseUser(user): SseUser,
) -> Result<impl Responder, ApiError> {
    let lease = Lease::take(&state, &req, &user)?;
    crate::access::deployment(
        &state,
        &user,
        *id,
        oec_common::auth::Permission::ProjectDeploymentsView,
    )
    .await?;
    let rx = state.hub.subscribe();
    let last_seq = last_event_id(
        &req,
        |v| v.parse::<i64>().ok().filter(|n| *n >= 0),
        "a line's sequence number (0 or more)",
    )?
    .unwrap_or(0);
    let mut queue = VecDeque::new();
    queue.push_back(connected());
    let st = DeploymentStream {
        tick: keepalive(state.settings.sse_keepalive),
        state,
        user,
        lease,
        deployment: *id,
        rx,
        last_seq,
        queue,
        phase: Phase::Backlog,
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(e) = st.queue.pop_front() {
                return Some((Ok(e), st));
            }
            match st.phase {
                Phase::Finished => return None,
                Phase::Backlog => {
                    let pool = &st.state.pool;
                    // Read the status first: if it is terminal, every line is already stored.
                    let d = match db::deployments::get(pool, st.deployment).await {
                        Ok(Some(d)) => d,
                        _ => return None,
                    };
                    let lines =
                        match db::deployments::logs_after(pool, st.deployment, st.last_seq, 500)
                            .await
                        {
                            Ok(l) => l,
                            Err(_) => return None,
                        };
                    let full = lines.len() == 500;
                    for l in &lines {
                        st.queue.push_back(log_event(st.deployment, l));
                        st.last_seq = l.seq;
                    }
                    if !full {
                        if d.status.is_terminal() {
                            let body = json!({"type": "deployment_finished", "data": {
                                "deployment_id": d.id, "status": d.status, "error_message": d.error_message,
                                "duration_seconds": d.duration_seconds, "completed_at": d.completed_at}});
                            st.queue.push_back(sse::Event::Data(
                                sse::Data::new(body.to_string()).event("deployment_finished"),
                            ));
                            st.phase = Phase::Finished;
                        } else {
                            st.phase = Phase::Live;
                        }
                    }
                }
                Phase::Live => {
                    tokio::select! {
                        () = &mut st.lease.expiry => {
                            st.queue.push_back(sse::Event::Comment(
                                "token expired; reconnect with a fresh token and Last-Event-ID".into(),
                            ));
                            st.phase = Phase::Finished;
                        }
                        r = st.rx.recv() => match r {
                            Ok(p) if p.event.kind == PERMISSIONS_CHANGED
                                && p.event.user_id().is_none_or(|u| u == st.user.id) =>
                            {
                                if !st.still_allowed().await {
                                    st.queue.push_back(sse::Event::Comment("access revoked".into()));
                                    st.phase = Phase::Finished;
                                }
                            }
                            Ok(p) if p.event.deployment_id() == Some(st.deployment) => {
                                let seq = p.event.data.get("seq").and_then(|s| s.as_i64());
                                match seq {
                                    Some(s) if s <= st.last_seq => {}
                                    Some(s) if s == st.last_seq + 1 => {
                                        st.last_seq = s;
                                        let mut ev = p.event.clone();
                                        ev.id = s.to_string();
                                        st.queue.push_back(Prepared::new(ev).to_sse());
                                    }
                                    // A gap, or a status change: read from PostgreSQL.
                                    _ => st.phase = Phase::Backlog,
                                }
                            }
                            Ok(_) => {}
                            Err(broadcast::error::RecvError::Lagged(_)) => st.phase = Phase::Backlog,
                            Err(broadcast::error::RecvError::Closed) => return None,
                        },
                        _ = st.tick.tick() => st.queue.push_back(sse::Event::Comment("keepalive".into())),
                    }
                }
            }
        }
    });
    Ok(respond(stream))
}
