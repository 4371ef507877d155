//! The two event-stream endpoints: `/events/stream` (every event the caller
//! may see, resumable with `Last-Event-ID` from the replay stream) and
//! `/deployments/{id}/events` (one deployment's story from PostgreSQL, then
//! live). They read the process's fan-out in `hub.rs`; each stream holds a
//! [`Lease`] and follows its user's permissions while open.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, web};
use oec_common::events::{CONNECTED, DeploymentRef, is_after, parse_id};
use oec_common::model::ids::DeploymentId;
use oec_common::{db, lifecycle};
use tokio::time::Instant;
use uuid::Uuid;

use crate::errors::ApiError;
use crate::extract::{AuthUser, SseUser};
use crate::hub::{Prepared, REPLAY_BATCH, StreamCounts, StreamSlot, sse_frame};
use crate::relay::{Follow, Key, LocalHub, Relayed, Subscription};
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
    p.event
        .event
        .permissions()
        .is_some_and(|c| match c.user_id {
            Some(u) => u == user,
            None => scope.covers(p.event.org_id, c.project_id),
        })
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

    /// The router's keys for what this scope sees: everything for a portal
    /// admin, else its organizations and projects; and the
    /// `permissions_changed` events naming its user.
    fn keys(&self) -> Vec<Key> {
        let mut keys: Vec<Key> = self.user.map(Key::User).into_iter().collect();
        if self.all {
            keys.push(Key::All);
        } else {
            keys.extend(self.orgs.iter().copied().map(Key::Org));
            keys.extend(self.projects.iter().copied().map(Key::Project));
        }
        keys
    }

    fn covers(&self, org: Uuid, project: Option<Uuid>) -> bool {
        self.all
            || self.orgs.contains(&org)
            || project.is_some_and(|id| self.projects.contains(&id))
    }

    fn allows(&self, p: &Prepared) -> bool {
        let e = &p.event.event;
        let about = e.permissions().map(|c| c.user_id);
        self.allows_routing(p.event.org_id, e.project_id(), about)
    }

    /// `permissions_changed` (`about` is `Some`) goes to the user it names
    /// only; every other event to whoever may see its organization or
    /// project.
    fn allows_routing(
        &self,
        org: Uuid,
        project: Option<Uuid>,
        about: Option<Option<Uuid>>,
    ) -> bool {
        match about {
            Some(user) => user.is_some() && user == self.user,
            None => self.covers(org, project),
        }
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

/// The `Last-Event-ID` header, else the `last_event_id` query parameter
/// (for an EventSource that a page opens again itself, which cannot set the
/// header), when present and not empty, parsed by `parse` (the endpoint's
/// id scheme); one that does not parse is a 400 naming the scheme, not a
/// silent restart from nothing.
fn last_event_id<T>(
    req: &HttpRequest,
    parse: impl Fn(&str) -> Option<T>,
    scheme: &str,
) -> Result<Option<T>, ApiError> {
    let query =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get("last_event_id").cloned());
    let v = match req.headers().get("Last-Event-ID") {
        Some(h) => h.to_str().unwrap_or("\u{fffd}").to_owned(),
        None => match query {
            Some(q) => q,
            None => return Ok(None),
        },
    };
    let v = v.trim();
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

fn respond<S>(stream: S) -> actix_web::HttpResponse
where
    S: futures_util::Stream<Item = Result<web::Bytes, Infallible>> + 'static,
{
    actix_web::HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream)
}

struct StreamState {
    state: web::Data<AppState>,
    user: AuthUser,
    lease: Lease,
    sub: Subscription,
    scope: Scope,
    replay: VecDeque<Prepared>,
    replayed_up_to: Option<String>,
    /// A `permissions_changed` about this stream, met while batching frames.
    control: Option<Arc<Prepared>>,
    connected: bool,
    done: bool,
}

/// `GET /api/v1/events/stream`: every event the caller may see.
#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events", params(("token" = Option<String>, Query, description = "The access token, for clients that cannot send `Authorization` (EventSource)."), ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id."), ("last_event_id" = Option<String>, Query, description = "The same, for a client that cannot set the header.")),
    responses((status = 200, description = "Server-sent events of every deployment you may see: `connected`, then the event types of `/api/v1/events/schema`.", content_type = "text/event-stream", body = String), (status = 429, description = "Too many open streams for the user or address.", body = crate::errors::ErrorBody)))]
pub async fn events_stream(
    state: web::Data<AppState>,
    local: web::Data<LocalHub>,
    req: HttpRequest,
    SseUser(user): SseUser,
) -> Result<actix_web::HttpResponse, ApiError> {
    let lease = Lease::take(&state, &req, &user)?;
    let scope = Scope::load(&state, &user).await?;
    // Subscribe before reading the replay, so nothing falls in between.
    let sub = local.subscribe(scope.keys(), Follow::Scope);
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
                let about = r.is_permissions_changed().then_some(r.data.user_id);
                scope.allows_routing(r.org_id, r.data.project_id, about)
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
        sub,
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
                r = st.sub.recv() => r,
                () = &mut st.lease.expiry => {
                    st.done = true;
                    return Some((Ok(web::Bytes::from_static(EXPIRED)), st));
                }
            };
            match received {
                Relayed::Keepalive => {
                    return Some((Ok(web::Bytes::from_static(KEEPALIVE)), st));
                }
                // What was published while Redis was away never reached
                // the replay stream either: nothing to catch up from here.
                Relayed::Resubscribed => continue,
                Relayed::Event(p) => {
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
                        let more: &[u8] = match st.sub.try_recv() {
                            Some(Relayed::Event(q)) if concerns(&q, st.user.id, &st.scope) => {
                                // Handled before anything later is sent.
                                st.control = Some(q);
                                break;
                            }
                            Some(Relayed::Event(q)) => {
                                if st.wants(&q) {
                                    out.get_or_insert_with(|| web::BytesMut::from(&p.frame[..]))
                                        .extend_from_slice(&q.frame);
                                }
                                continue;
                            }
                            Some(Relayed::Keepalive | Relayed::Resubscribed) => continue,
                            Some(Relayed::Lost) => {
                                st.done = true;
                                LAGGED
                            }
                            None => break,
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
                Relayed::Lost => {
                    // Too slow for its inbox: disconnect; the client resumes.
                    st.done = true;
                    return Some((Ok(web::Bytes::from_static(LAGGED)), st));
                }
            }
        }
    });
    Ok(respond(stream))
}

const KEEPALIVE: &[u8] = b": keepalive\n\n";
const LAGGED: &[u8] = b": lagged; reconnect with Last-Event-ID\n\n";
const EXPIRED: &[u8] = b": token expired; reconnect with a fresh token and Last-Event-ID\n\n";
const REVOKED: &[u8] = b": access revoked\n\n";

impl StreamState {
    /// Whether to send `p`. The router hands a stream only what its keys
    /// cover, so a refusal here is an event the replay already sent, one
    /// met while the scope was being re-read, or a routing miss: each is
    /// counted by its reason (the tests hold the last at zero).
    fn wants(&self, p: &Prepared) -> bool {
        let reason = if !is_after(&p.event.id, self.replayed_up_to.as_deref()) {
            "replayed"
        } else if self.scope.allows(p) {
            return true;
        } else if self.sub.last_was_wide() {
            "rescoping"
        } else {
            "scope"
        };
        unsent(reason);
        false
    }

    /// Re-reads the user's scope after a `permissions_changed`: the event's
    /// frame when it is about this user; `done` when the user is gone.
    async fn apply_permissions(&mut self, p: &Prepared) -> Option<web::Bytes> {
        match rescope(&self.state, &mut self.user).await {
            Ok(Some(scope)) => {
                self.sub.set_keys(scope.keys());
                self.scope = scope;
            }
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

/// Counts an event handed to a stream that did not send it.
fn unsent(reason: &'static str) {
    oec_common::metrics::count(
        "oec_sse_events_unsent_total",
        "Events that woke an event stream which did not send them, by reason: replayed (already sent by the resume), rescoping (queued while the stream re-read its permissions) or scope (routed to a stream that may not see it; a bug).",
        &[("reason", reason)],
        1,
    );
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
    deployment: DeploymentRef,
    sub: Subscription,
    last_seq: i64,
    queue: VecDeque<web::Bytes>,
    phase: Phase,
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
            self.deployment.deployment_id,
            oec_common::auth::Permission::ProjectDeploymentsView,
        )
        .await
        .is_ok()
    }

    /// The next stored lines (after `last_seq`), then `deployment_finished`
    /// once the deployment is terminal and every line is sent. Lines are
    /// made into events by the same function as live ones, so a replayed
    /// line is the same JSON as it was live.
    async fn read_backlog(&mut self) -> bool {
        let pool = &self.state.pool;
        let id = self.deployment.deployment_id;
        // Read the status first: if it is terminal, every line is already stored.
        let d = match db::deployments::get(pool, DeploymentId(id)).await {
            Ok(Some(d)) => d,
            _ => return false,
        };
        let lines = match db::deployments::logs_after(pool, id, self.last_seq, 500).await {
            Ok(l) => l,
            Err(_) => return false,
        };
        let full = lines.len() == 500;
        for l in &lines {
            let event = lifecycle::line_event(&self.deployment, l);
            self.queue.push_back(sse_frame(
                event.kind(),
                &l.seq.to_string(),
                &event.to_json(),
            ));
            self.last_seq = l.seq;
        }
        if !full {
            if d.status.is_terminal() {
                let event = lifecycle::finished_event(&self.deployment, &d);
                self.queue
                    .push_back(sse_frame(event.kind(), "", &event.to_json()));
                self.phase = Phase::Finished;
            } else {
                self.phase = Phase::Live;
            }
        }
        true
    }

    /// A live event: a line's shared frame when it is the next one; a gap,
    /// or the deployment's end, is read from PostgreSQL instead.
    async fn take_live(&mut self, p: &Prepared) {
        let e = &p.event.event;
        if e.permissions()
            .is_some_and(|c| c.user_id.is_none_or(|u| u == self.user.id))
        {
            if !self.still_allowed().await {
                self.queue.push_back(web::Bytes::from_static(REVOKED));
                self.phase = Phase::Finished;
            }
            return;
        }
        // Live only on /events/stream; here its line says the same.
        if e.deployment_id() != Some(self.deployment.deployment_id)
            || matches!(e, oec_common::events::Event::MigrationProgress(_))
        {
            unsent("scope");
            return;
        }
        match &p.line_frame {
            Some((seq, _)) if *seq <= self.last_seq => {}
            Some((seq, frame)) if *seq == self.last_seq + 1 => {
                self.last_seq = *seq;
                self.queue.push_back(frame.clone());
            }
            _ => self.phase = Phase::Backlog,
        }
    }
}

/// `GET /api/v1/deployments/{id}/events`: the stored log lines (after
/// `Last-Event-ID`), then live lines, then `deployment_finished`. Live lines
/// come from the thread's relay as frames encoded once for every client.
#[utoipa::path(get, path = "/api/v1/deployments/{id}/events", tag = "events", params(("id" = Uuid, Path, description = "The deployment's id."), ("token" = Option<String>, Query, description = "The access token, for clients that cannot send `Authorization` (EventSource)."), ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id."), ("last_event_id" = Option<String>, Query, description = "The same, for a client that cannot set the header.")),
    responses((status = 200, description = "Server-sent events of one deployment: its history, then live until it ends.", content_type = "text/event-stream", body = String), (status = 429, description = "Too many open streams for the user or address.", body = crate::errors::ErrorBody)))]
pub async fn deployment_events(
    state: web::Data<AppState>,
    local: web::Data<LocalHub>,
    req: HttpRequest,
    id: web::Path<Uuid>,
    SseUser(user): SseUser,
) -> Result<actix_web::HttpResponse, ApiError> {
    let lease = Lease::take(&state, &req, &user)?;
    crate::access::deployment(
        &state,
        &user,
        *id,
        oec_common::auth::Permission::ProjectDeploymentsView,
    )
    .await?;
    let referenced = db::deployments::reference(&state.pool, DeploymentId(*id))
        .await?
        .ok_or(ApiError::NotFound("deployment"))?;
    let deployment = referenced.deployment;
    // Its lines and end, and the permission changes that may revoke it.
    let sub = local.subscribe(
        vec![
            Key::Deployment(deployment.deployment_id),
            Key::User(user.id),
            Key::OrgControl(referenced.organization_id),
        ],
        Follow::Check,
    );
    let last_seq = last_event_id(
        &req,
        |v| v.parse::<i64>().ok().filter(|n| *n >= 0),
        "a line's sequence number (0 or more)",
    )?
    .unwrap_or(0);
    let mut queue = VecDeque::new();
    queue.push_back(web::Bytes::from_static(CONNECTED));
    let st = DeploymentStream {
        state,
        user,
        lease,
        deployment,
        sub,
        last_seq,
        queue,
        phase: Phase::Backlog,
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(frame) = st.queue.pop_front() {
                return Some((Ok::<_, Infallible>(frame), st));
            }
            match st.phase {
                Phase::Finished => return None,
                Phase::Backlog => {
                    if !st.read_backlog().await {
                        return None;
                    }
                }
                Phase::Live => {
                    let received = tokio::select! {
                        r = st.sub.recv() => r,
                        () = &mut st.lease.expiry => {
                            st.queue.push_back(web::Bytes::from_static(EXPIRED));
                            st.phase = Phase::Finished;
                            continue;
                        }
                    };
                    match received {
                        Relayed::Event(p) => st.take_live(&p).await,
                        Relayed::Keepalive => {
                            st.queue.push_back(web::Bytes::from_static(KEEPALIVE))
                        }
                        // Fell behind, or the relay lost Redis for a while:
                        // PostgreSQL has every line, and the end.
                        Relayed::Lost | Relayed::Resubscribed => {
                            st.sub.recover();
                            st.phase = Phase::Backlog;
                        }
                    }
                }
            }
        }
    });
    Ok(respond(stream))
}
