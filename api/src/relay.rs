//! The hub's events on one actix worker thread, routed to the streams that
//! may see them. Each open stream subscribes under the keys of what it may
//! see (its organizations, its projects, everything for a portal admin, its
//! deployment, its user), and an event wakes only the streams indexed under
//! its own keys: routing costs O(receivers), never O(streams on the thread).
//! The thread has one receiver of the process-wide channel (`hub.rs`), and
//! everything here is the thread's own (no lock, no atomic), since an actix
//! worker's streams all run on it.
//!
//! A stream's inbox is bounded: one that falls [`INBOX`] events behind is
//! told it lost events and disconnects (the client resumes with
//! `Last-Event-ID`), so a slow client never delays the others or grows
//! memory without bound.
//!
//! A `permissions_changed` may widen what a stream sees, and the stream
//! learns its new scope only after reading it from PostgreSQL: the router
//! marks it as re-scoping when it hands it the event, and delivers it every
//! event from then on until the stream has its new keys, filtering them
//! itself; nothing published in between is lost.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use oec_common::events::Event;
use tokio::sync::broadcast;
use tokio::time::{Instant, interval_at};
use uuid::Uuid;

use crate::hub::{Hub, Hubbed, Prepared};

/// Events one stream may have waiting before it is disconnected as lagging.
const INBOX: usize = 4_096;

/// The keepalive period's slices: a tick every period / `SLICES` visits
/// one slice of the streams.
const SLICES: u64 = 8;

/// What a stream is indexed under.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Key {
    /// Every event (a portal admin's `/events/stream`).
    All,
    /// The events of an organization (its members with organization-wide access).
    Org(Uuid),
    /// The events of a project (its members).
    Project(Uuid),
    /// One deployment's lines and end (`/deployments/{id}/events`).
    Deployment(Uuid),
    /// The `permissions_changed` events that name the user.
    User(Uuid),
    /// The `permissions_changed` events of an organization that name no
    /// user, for the deployment streams in it.
    OrgControl(Uuid),
}

/// How a stream follows a `permissions_changed` handed to it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Follow {
    /// It re-reads its scope and changes its keys (`/events/stream`): it
    /// sees every event until then.
    Scope,
    /// It checks that it may still see what it shows (a deployment's stream).
    Check,
}

/// What a stream's [`Subscription`] hands it.
#[derive(Clone)]
pub enum Relayed {
    Event(Arc<Prepared>),
    /// Events for this stream were dropped (it, or the thread's relay, fell
    /// behind): it must end and be resumed.
    Lost,
    /// Time for the `: keepalive` comment (one timer per thread, not per client).
    Keepalive,
    /// The subscription to Redis was lost and is back: what was published
    /// meanwhile may be missing from the live events.
    Resubscribed,
}

struct Inbox {
    events: VecDeque<Arc<Prepared>>,
    lost: bool,
    keepalive: bool,
    resubscribed: bool,
    /// The last event routed here (an event found under two of the
    /// stream's keys is delivered once).
    stamp: u64,
    /// Handed something since the keepalive last looked (a stream that is
    /// sent events needs no keepalive).
    busy: bool,
    waker: Option<Waker>,
}

impl Inbox {
    /// Hands the stream event `stamp`; false when it already had it.
    fn deliver(&mut self, p: &Arc<Prepared>, stamp: u64) -> bool {
        if self.stamp == stamp {
            return false;
        }
        self.stamp = stamp;
        if self.lost {
            return false;
        }
        self.busy = true;
        if self.events.len() >= INBOX {
            self.lost = true;
            self.events = VecDeque::new();
        } else {
            self.events.push_back(p.clone());
        }
        self.wake();
        true
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// A loss, else the next event.
    fn take_event(&mut self) -> Option<Relayed> {
        if self.lost {
            return Some(Relayed::Lost);
        }
        let p = self.events.pop_front()?;
        // A burst's queue is not kept for the stream's lifetime.
        if self.events.is_empty() && self.events.capacity() > 64 {
            self.events = VecDeque::new();
        }
        Some(Relayed::Event(p))
    }

    /// A loss, the next event, else a notice.
    fn take(&mut self) -> Option<Relayed> {
        if let Some(r) = self.take_event() {
            return Some(r);
        }
        if std::mem::take(&mut self.resubscribed) {
            return Some(Relayed::Resubscribed);
        }
        if std::mem::take(&mut self.keepalive) {
            return Some(Relayed::Keepalive);
        }
        None
    }
}

type Shared = Rc<RefCell<Inbox>>;

struct Member {
    inbox: Shared,
    follow: Follow,
}

#[derive(Default)]
struct Router {
    next: u64,
    stamp: u64,
    /// Every stream on the thread (for the keepalive and the relay's losses).
    members: HashMap<u64, Member>,
    index: HashMap<Key, HashMap<u64, Shared>>,
    /// Streams re-reading their scope after a `permissions_changed`.
    rescoping: HashMap<u64, Shared>,
}

impl Router {
    fn add(&mut self, id: u64, keys: &[Key]) {
        let Some(m) = self.members.get(&id) else {
            return;
        };
        for k in keys {
            self.index
                .entry(*k)
                .or_default()
                .insert(id, m.inbox.clone());
        }
    }

    fn remove(&mut self, id: u64, keys: &[Key]) {
        for k in keys {
            if let Some(set) = self.index.get_mut(k) {
                set.remove(&id);
                if set.is_empty() {
                    self.index.remove(k);
                }
            }
        }
    }

    /// Delivers `p` to the streams under its keys; returns how many it woke.
    fn route(&mut self, p: &Arc<Prepared>) -> u64 {
        self.stamp += 1;
        let stamp = self.stamp;
        let e = &p.event.event;
        let org = p.event.org_id;
        let mut keys: [Option<Key>; 4] = [None; 4];
        let control = e.permissions();
        match control {
            Some(c) => match c.user_id {
                Some(user) => keys[0] = Some(Key::User(user)),
                None => {
                    keys[0] = Some(Key::All);
                    keys[1] = Some(Key::Org(org));
                    keys[2] = c.project_id.map(Key::Project);
                    keys[3] = Some(Key::OrgControl(org));
                }
            },
            None => {
                keys[0] = Some(Key::All);
                keys[1] = Some(Key::Org(org));
                keys[2] = e.project_id().map(Key::Project);
                // A deployment's own stream shows its lines and its end.
                if matches!(
                    e,
                    Event::DeploymentProgress(_) | Event::DeploymentFinished(_)
                ) {
                    keys[3] = e.deployment_id().map(Key::Deployment);
                }
            }
        }
        let mut woken = 0;
        let mut now_rescoping = Vec::new();
        for key in keys.iter().flatten() {
            let Some(set) = self.index.get(key) else {
                continue;
            };
            for (id, inbox) in set {
                if inbox.borrow_mut().deliver(p, stamp) {
                    woken += 1;
                    if control.is_some() {
                        now_rescoping.push(*id);
                    }
                }
            }
        }
        for inbox in self.rescoping.values() {
            if inbox.borrow_mut().deliver(p, stamp) {
                woken += 1;
            }
        }
        for id in now_rescoping {
            if let Some(m) = self.members.get(&id)
                && m.follow == Follow::Scope
            {
                self.rescoping.insert(id, m.inbox.clone());
            }
        }
        woken
    }

    fn each(&self, f: impl Fn(&mut Inbox)) {
        for m in self.members.values() {
            let mut inbox = m.inbox.borrow_mut();
            f(&mut inbox);
            inbox.wake();
        }
    }

    /// One tick of the keepalive: the streams of slice `slice` (of
    /// [`SLICES`]) that were handed nothing since their last visit get one.
    /// Each stream is visited once a period, the thread's streams spread
    /// over it, so a keepalive never wakes every stream at once.
    fn keepalive(&self, slice: u64) {
        for (id, m) in &self.members {
            if id % SLICES != slice {
                continue;
            }
            let mut inbox = m.inbox.borrow_mut();
            if std::mem::take(&mut inbox.busy) {
                continue;
            }
            inbox.keepalive = true;
            inbox.wake();
        }
    }
}

/// The thread's router, fed by a task that receives the hub's events.
pub struct LocalHub {
    router: Rc<RefCell<Router>>,
}

impl LocalHub {
    /// Must run on the worker's thread (the app factory does).
    pub fn start(hub: &Hub, keepalive_every: Duration) -> LocalHub {
        let router = Rc::new(RefCell::new(Router::default()));
        let mut rx = hub.subscribe();
        hub.run_here();
        let r = router.clone();
        actix_web::rt::spawn(async move {
            let every = keepalive_every / SLICES as u32;
            let mut tick = interval_at(Instant::now() + every, every);
            let mut slice = 0u64;
            loop {
                tokio::select! {
                    item = rx.recv() => match item {
                        Ok(Hubbed::Event(p)) => {
                            let woken = r.borrow_mut().route(&p);
                            if woken > 0 {
                                oec_common::metrics::count(
                                    "oec_sse_events_fanned_out_total",
                                    "Events handed to event-stream clients (one per event and client woken).",
                                    &[],
                                    woken,
                                );
                            }
                        }
                        Ok(Hubbed::Resubscribed) => r.borrow().each(|i| i.resubscribed = true),
                        Err(broadcast::error::RecvError::Lagged(_)) => r.borrow().each(|i| {
                            i.lost = true;
                            i.events = VecDeque::new();
                        }),
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tick.tick() => {
                        slice = (slice + 1) % SLICES;
                        r.borrow().keepalive(slice);
                    }
                }
            }
        });
        LocalHub { router }
    }

    /// A stream's subscription under `keys`.
    pub fn subscribe(&self, keys: Vec<Key>, follow: Follow) -> Subscription {
        let inbox = Rc::new(RefCell::new(Inbox {
            events: VecDeque::new(),
            lost: false,
            keepalive: false,
            resubscribed: false,
            stamp: 0,
            busy: false,
            waker: None,
        }));
        let mut r = self.router.borrow_mut();
        r.next += 1;
        let id = r.next;
        r.members.insert(
            id,
            Member {
                inbox: inbox.clone(),
                follow,
            },
        );
        r.add(id, &keys);
        drop(r);
        Subscription {
            router: self.router.clone(),
            id,
            keys,
            inbox,
            wide: 0,
            last_wide: false,
        }
    }
}

/// One stream's place in its thread's router; leaves it when dropped.
pub struct Subscription {
    router: Rc<RefCell<Router>>,
    id: u64,
    keys: Vec<Key>,
    inbox: Shared,
    /// Events still queued that were routed here while re-scoping.
    wide: usize,
    /// Whether the last event handed out was one of them.
    last_wide: bool,
}

impl Subscription {
    fn handed(&mut self, r: Relayed) -> Relayed {
        if let Relayed::Event(_) = r {
            self.last_wide = self.wide > 0;
            self.wide = self.wide.saturating_sub(1);
        }
        r
    }

    /// The next event or notice, waiting for one.
    pub async fn recv(&mut self) -> Relayed {
        let inbox = self.inbox.clone();
        let r = std::future::poll_fn(|cx| {
            let mut inbox = inbox.borrow_mut();
            match inbox.take() {
                Some(r) => Poll::Ready(r),
                None => {
                    inbox.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        self.handed(r)
    }

    /// An event already waiting, or a loss; not a keepalive or a resubscribe.
    pub fn try_recv(&mut self) -> Option<Relayed> {
        let r = self.inbox.borrow_mut().take_event();
        r.map(|r| self.handed(r))
    }

    /// Clears a loss, for a stream that recovers from one itself (a
    /// deployment's, from PostgreSQL).
    pub fn recover(&mut self) {
        self.inbox.borrow_mut().lost = false;
        self.wide = 0;
    }

    /// Indexes the stream under `keys` instead (its scope was re-read), and
    /// ends its re-scoping.
    pub fn set_keys(&mut self, keys: Vec<Key>) {
        let mut r = self.router.borrow_mut();
        r.remove(self.id, &self.keys);
        r.add(self.id, &keys);
        if r.rescoping.remove(&self.id).is_some() {
            self.wide = self.inbox.borrow().events.len();
        }
        self.keys = keys;
    }

    /// Whether the event last handed out came while the stream was
    /// re-scoping (so its old keys did not choose it).
    pub fn last_was_wide(&self) -> bool {
        self.last_wide
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Never borrowed here: routing only wakes tasks, it does not run them.
        let mut r = self.router.borrow_mut();
        r.remove(self.id, &self.keys);
        r.rescoping.remove(&self.id);
        r.members.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use oec_common::events::{
        DeploymentProgress, DeploymentRef, Envelope, EnvironmentStatusChanged, PermissionsChanged,
    };
    use oec_common::model::{DeploymentStatus, EnvironmentStatus, LogLevel, PermissionsReason};

    use super::*;

    fn detached() -> LocalHub {
        LocalHub {
            router: Rc::new(RefCell::new(Router::default())),
        }
    }

    fn route(hub: &LocalHub, envelope: Envelope) -> u64 {
        hub.router
            .borrow_mut()
            .route(&Arc::new(Prepared::new(envelope)))
    }

    fn line(org: Uuid, project: Uuid, deployment: Uuid) -> Envelope {
        Envelope::new(
            org,
            Event::DeploymentProgress(DeploymentProgress {
                deployment: DeploymentRef {
                    deployment_id: deployment,
                    environment_id: Uuid::new_v4(),
                    project_id: project,
                    project_name: "p".into(),
                    environment_name: "e".into(),
                    triggered_by: None,
                    branch: None,
                },
                status: DeploymentStatus::Running,
                progress_percent: 10,
                seq: 1,
                step: None,
                level: LogLevel::Info,
                message: "m".into(),
                timestamp: chrono::Utc::now(),
                data: None,
            }),
        )
    }

    fn status(org: Uuid, project: Uuid) -> Envelope {
        Envelope::new(
            org,
            Event::EnvironmentStatus(EnvironmentStatusChanged {
                environment_id: Uuid::new_v4(),
                project_id: project,
                deployment_id: Some(Uuid::new_v4()),
                status: EnvironmentStatus::Running,
            }),
        )
    }

    fn changed(org: Uuid, project: Option<Uuid>, user: Option<Uuid>) -> Envelope {
        Envelope::new(
            org,
            Event::PermissionsChanged(PermissionsChanged {
                organization_id: Some(org),
                project_id: project,
                user_id: user,
                reason: PermissionsReason::MembershipChanged,
            }),
        )
    }

    /// The events waiting for a subscription, by their envelope's org and project.
    fn drain(s: &mut Subscription) -> Vec<(Uuid, Option<Uuid>)> {
        let mut out = Vec::new();
        while let Some(r) = s.try_recv() {
            match r {
                Relayed::Event(p) => out.push((p.event.org_id, p.event.event.project_id())),
                _ => panic!("a loss"),
            }
        }
        out
    }

    #[test]
    fn an_event_wakes_exactly_the_streams_that_may_see_it_once_each() {
        let hub = detached();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (pa, pb, pb2) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let dep = Uuid::new_v4();
        let mut admin = hub.subscribe(vec![Key::All, Key::User(Uuid::new_v4())], Follow::Scope);
        let mut org_a = hub.subscribe(vec![Key::Org(a)], Follow::Scope);
        // A member of organization b's project pb, and of the whole of a
        // and of a's project (an event of pa is found under both keys).
        let mut member = hub.subscribe(vec![Key::Project(pb)], Follow::Scope);
        let mut both = hub.subscribe(vec![Key::Org(a), Key::Project(pa)], Follow::Scope);
        let mut one = hub.subscribe(
            vec![Key::Deployment(dep), Key::OrgControl(a)],
            Follow::Check,
        );
        // Many streams elsewhere: none of them is woken.
        let mut others: Vec<Subscription> = (0..1_000)
            .map(|_| hub.subscribe(vec![Key::Org(Uuid::new_v4())], Follow::Scope))
            .collect();

        assert_eq!(route(&hub, line(a, pa, dep)), 4, "admin, org_a, both, one");
        assert_eq!(route(&hub, status(a, pa)), 3, "not the deployment stream");
        assert_eq!(
            route(&hub, status(b, pb)),
            2,
            "admin and the project member"
        );
        assert_eq!(route(&hub, status(b, pb2)), 1, "the admin only");

        assert_eq!(drain(&mut admin).len(), 4);
        assert_eq!(drain(&mut org_a), vec![(a, Some(pa)); 2]);
        assert_eq!(drain(&mut both), vec![(a, Some(pa)); 2]);
        assert_eq!(drain(&mut member), vec![(b, Some(pb))]);
        assert_eq!(drain(&mut one), vec![(a, Some(pa))]);
        assert!(others.iter_mut().all(|s| drain(s).is_empty()));

        // A stream that leaves is never woken again.
        drop(org_a);
        assert_eq!(route(&hub, status(a, pa)), 2);
        drop(others);
        assert_eq!(hub.router.borrow().members.len(), 4);
    }

    #[test]
    fn a_permissions_change_reaches_whom_it_names_and_widens_it_until_its_new_keys() {
        let hub = detached();
        let (a, b, pb) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let (u, v) = (Uuid::new_v4(), Uuid::new_v4());
        let mut mine = hub.subscribe(vec![Key::User(u), Key::Org(a)], Follow::Scope);
        let mut theirs = hub.subscribe(vec![Key::User(v), Key::Org(a)], Follow::Scope);
        let mut watching = hub.subscribe(vec![Key::User(u), Key::OrgControl(a)], Follow::Check);

        // Named: only u's streams.
        assert_eq!(route(&hub, changed(a, None, Some(u))), 2);
        assert!(drain(&mut theirs).is_empty());
        assert_eq!(drain(&mut watching).len(), 1);
        // Until u's events stream has its new scope it is handed every
        // event (here one of b, which u is being added to); the
        // deployment stream is not widened.
        assert!(hub.router.borrow().rescoping.contains_key(&mine.id));
        assert_eq!(route(&hub, status(b, pb)), 1);
        assert_eq!(drain(&mut mine).len(), 2);
        mine.set_keys(vec![Key::User(u), Key::Org(a), Key::Org(b)]);
        assert!(hub.router.borrow().rescoping.is_empty());
        // From now on by its keys only.
        assert_eq!(route(&hub, status(b, pb)), 1);
        assert_eq!(route(&hub, status(Uuid::new_v4(), pb)), 0);
        assert_eq!(drain(&mut mine), vec![(b, Some(pb))]);
        assert!(!mine.last_was_wide());

        // Naming no user: everyone covering the organization, and its
        // deployment streams.
        assert_eq!(route(&hub, changed(a, None, None)), 3);
        assert_eq!(drain(&mut theirs).len(), 1);
    }

    #[test]
    fn the_events_queued_while_rescoping_are_marked_wide() {
        let hub = detached();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let u = Uuid::new_v4();
        let mut s = hub.subscribe(vec![Key::User(u), Key::Org(a)], Follow::Scope);
        route(&hub, changed(a, None, Some(u)));
        route(&hub, status(b, Uuid::new_v4()));
        route(&hub, status(b, Uuid::new_v4()));
        assert!(matches!(s.try_recv(), Some(Relayed::Event(_))));
        s.set_keys(vec![Key::User(u), Key::Org(a)]);
        assert!(matches!(s.try_recv(), Some(Relayed::Event(_))));
        assert!(s.last_was_wide());
        assert!(matches!(s.try_recv(), Some(Relayed::Event(_))));
        assert!(s.last_was_wide());
        route(&hub, status(a, Uuid::new_v4()));
        assert!(matches!(s.try_recv(), Some(Relayed::Event(_))));
        assert!(!s.last_was_wide());
    }

    #[test]
    fn a_stream_that_falls_an_inbox_behind_is_told_it_lost_events() {
        let hub = detached();
        let a = Uuid::new_v4();
        let mut s = hub.subscribe(vec![Key::Org(a)], Follow::Check);
        for _ in 0..INBOX {
            route(&hub, status(a, Uuid::new_v4()));
        }
        assert_eq!(
            hub.router.borrow().members[&s.id]
                .inbox
                .borrow()
                .events
                .len(),
            INBOX
        );
        // One more is one too many: the queue is dropped, not grown, and
        // the stream woken to hear it; later events do not wake it.
        assert_eq!(route(&hub, status(a, Uuid::new_v4())), 1);
        assert_eq!(route(&hub, status(a, Uuid::new_v4())), 0);
        assert!(matches!(s.try_recv(), Some(Relayed::Lost)));
        assert!(
            hub.router.borrow().members[&s.id]
                .inbox
                .borrow()
                .events
                .is_empty()
        );
        s.recover();
        assert_eq!(route(&hub, status(a, Uuid::new_v4())), 1);
        assert!(matches!(s.try_recv(), Some(Relayed::Event(_))));
    }

    #[test]
    fn the_keepalive_visits_a_slice_at_a_time_and_skips_streams_that_were_sent_events() {
        let hub = detached();
        let a = Uuid::new_v4();
        let mut subs: Vec<Subscription> = (0..64)
            .map(|_| hub.subscribe(vec![Key::Org(a)], Follow::Scope))
            .collect();
        let waiting = |subs: &mut [Subscription]| {
            subs.iter_mut()
                .filter(|s| matches!(s.inbox.borrow_mut().take(), Some(Relayed::Keepalive)))
                .count()
        };
        // One tick: one slice only.
        hub.router.borrow().keepalive(0);
        assert_eq!(waiting(&mut subs), 64 / SLICES as usize);
        // A whole period: every idle stream once.
        for slice in 1..SLICES {
            hub.router.borrow().keepalive(slice);
        }
        assert_eq!(waiting(&mut subs), 64 - 64 / SLICES as usize);
        // Streams handed an event since their last visit get none.
        route(&hub, status(a, Uuid::new_v4()));
        for s in &mut subs {
            assert!(matches!(s.try_recv(), Some(Relayed::Event(_))));
        }
        for slice in 0..SLICES {
            hub.router.borrow().keepalive(slice);
        }
        assert_eq!(waiting(&mut subs), 0);
        for slice in 0..SLICES {
            hub.router.borrow().keepalive(slice);
        }
        assert_eq!(waiting(&mut subs), 64);
    }
}
