//! The gateway's own view of the upstream CSE's resources, for what a decision needs and the
//! request does not carry (issue #13.4, #13.5):
//!
//! - **The target's resource type.** TS-0003 §7.1.5 matches an `acod`'s `ty`/`spty` against
//!   the target of a CREATE (the parent), which the request does not say. The proxy asks the
//!   CSE: a RETRIEVE (`rcn=1`, attributes only) of the target's normalised path, as the
//!   gateway's own configured originator with a request id of its own, no query or header of
//!   the client's. From the answer (`{"m2m:<type>": {...}}`) it reads `ty`, and the
//!   specialization: a `<flexContainer>`'s `cnd`, a `<mgmtObj>`'s `mgd`.
//! - **`<group>` membership.** An app's `cse_groups` name `<group>` resources (SP-relative
//!   `/cse-id/grp1` or absolute `//sp/cse-id/grp1`); their `mid` (nested groups to
//!   `group_depth`, cycles visited once) is resolved before the app's decisions and offered
//!   to its plugins through the `groups` capability ([`CseGroups`]).
//!
//! Both are cached for `ttl_s` in tables of at most `max_entries`, looked up once however many
//! requests want the same thing at once (single flight), and bounded in time (`timeout_ms`
//! per look-up or group resolution) and size (`max_response_bytes`). A successful DELETE
//! through the proxy empties the type cache (the path may be created again with another
//! type, and other paths may alias the deleted resource); an UPDATE or DELETE whose target
//! ends in a cached group's `ri` or `rn` drops that group (its `mid` may have changed).
//! Resource types and specializations cannot change by UPDATE (`ty` is read-only, `cnd` and
//! `mgd` write-once), so an UPDATE keeps the type cache.
//!
//! Anything not learned (CSE down, 404, 403, timeout, an answer that is not a oneM2M
//! resource) is unknown, never guessed: the target type stays absent (an `acod` with `ty` or
//! `spty` then does not match) and the group has no members from the CSE. Failures are not
//! cached, only collapsed (single flight), and counted in
//! `palisade_cse_lookups_total{kind,outcome}`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderValue, ACCEPT};
use hyper::StatusCode;
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::metrics::Metrics;
use super::onem2m::{self, X_M2M_ORIGIN, X_M2M_RI, X_M2M_RSC, X_M2M_RVI};
use super::proxy::Upstream;
use super::setup::AppRoute;
use palisade_core::request::{AccessRequest, Operation};
use palisade_core::sandbox::MembershipSource;

/// `ty` of `<group>` (TS-0004 §6.3.4.2.1).
const TY_GROUP: u32 = 9;
/// `ty` of `<mgmtObj>`, whose `mgd` is its specialization.
const TY_MGMT_OBJ: u32 = 13;
/// `ty` of `<flexContainer>`, whose `cnd` is its specialization.
const TY_FLEX_CONTAINER: u32 = 28;
/// `mt` "mixed": a member may be anything, including a group.
const MT_MIXED: u32 = 24;

/// `[upstream.lookup]`: how the gateway asks the CSE about resources. Absent: it never does
/// (target types stay unknown, `cse_groups` are refused).
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// The gateway's own originator for its look-ups (`X-M2M-Origin`), e.g. its CSE-ID
    /// `"/id-mn"` or an AE-ID the CSE's ACPs let retrieve the protected resources and groups.
    /// Never taken from a client. Required.
    #[serde(deserialize_with = "originator")]
    pub originator: String,
    /// One look-up (or one whole group resolution, nested groups included), connect to
    /// last byte; past it, the answer is unknown. Default 1,000 ms; 0 is refused. A request
    /// waits at most this long for what it needs before being decided.
    #[serde(
        default = "defaults::timeout_ms",
        deserialize_with = "super::config::positive"
    )]
    pub timeout_ms: u64,
    /// How long a learned type or group is used before it is asked again. Default 60 s; 0
    /// is refused. Longer: fewer look-ups; a group member removed at the CSE (or a resource
    /// deleted past the gateway) keeps its old standing that much longer.
    #[serde(
        default = "defaults::ttl_s",
        deserialize_with = "super::config::positive"
    )]
    pub ttl_s: u64,
    /// Entries each cache (types, groups) holds at most; when full, an expired entry or the
    /// one nearest to expiry makes room. About 200 bytes a type entry, a group's members
    /// besides. Default 4,096; 0 is refused.
    #[serde(
        default = "defaults::max_entries",
        deserialize_with = "super::config::positive"
    )]
    pub max_entries: usize,
    /// Largest answer read for one look-up. Default 64 KiB; 0 is refused. A bigger answer
    /// is unknown.
    #[serde(
        default = "defaults::max_response_bytes",
        deserialize_with = "super::config::positive"
    )]
    pub max_response_bytes: usize,
    /// The CSE's own CSE-ID (`"/id-in"`). With it, `/id-in/CAE1`, `//<sp_id>/id-in/CAE1` and
    /// `CAE1` name the same member, and the same group. Default: IDs compare as written.
    #[serde(default)]
    pub cse_id: Option<String>,
    /// The service provider's SP-ID (`"//acme.example.com"`), for absolute IDs; needs
    /// `cse_id`. Default: none.
    #[serde(default)]
    pub sp_id: Option<String>,
    /// Nesting levels followed below a group (members that are groups, `mt` 9, mixed `mt` 24
    /// members found to be groups, or `<id>/fopt`). Deeper groups add no members. Default 3.
    #[serde(default = "defaults::group_depth")]
    pub group_depth: usize,
    /// Members one group resolution may collect; more makes the group unknown (no members
    /// from the CSE). Default 1,024; 0 is refused.
    #[serde(
        default = "defaults::group_max_members",
        deserialize_with = "super::config::positive"
    )]
    pub group_max_members: usize,
    /// Retrievals one group resolution may make (the group, nested groups, mixed members);
    /// more makes the group unknown. Default 32; 0 is refused.
    #[serde(
        default = "defaults::group_max_lookups",
        deserialize_with = "super::config::positive"
    )]
    pub group_max_lookups: usize,
}

mod defaults {
    pub fn timeout_ms() -> u64 {
        1_000
    }
    pub fn ttl_s() -> u64 {
        60
    }
    pub fn max_entries() -> usize {
        4096
    }
    pub fn max_response_bytes() -> usize {
        64 << 10
    }
    pub fn group_depth() -> usize {
        3
    }
    pub fn group_max_members() -> usize {
        1024
    }
    pub fn group_max_lookups() -> usize {
        32
    }
}

/// The look-up originator goes into a header as it is: visible ASCII, no spaces, bounded.
fn originator<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.is_empty() || text.len() > 256 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(serde::de::Error::custom(format!(
            "{text:?} is not an originator ID: give 1-256 visible ASCII characters, e.g. the gateway's CSE-ID \"/id-mn\""
        )));
    }
    Ok(text)
}

impl LookupConfig {
    /// What is wrong with `cse_id`/`sp_id`, if anything.
    pub fn problem(&self) -> Option<String> {
        if let Some(cse_id) = &self.cse_id {
            let plain = cse_id
                .strip_prefix('/')
                .is_some_and(|rest| !rest.is_empty() && is_id_segment(rest));
            if !plain {
                return Some(format!(
                    "cse_id {cse_id:?} is not a CSE-ID: give '/' and one segment, e.g. \"/id-in\""
                ));
            }
        }
        if let Some(sp_id) = &self.sp_id {
            let plain = sp_id
                .strip_prefix("//")
                .is_some_and(|rest| !rest.is_empty() && is_id_segment(rest));
            if !plain {
                return Some(format!(
                    "sp_id {sp_id:?} is not an SP-ID: give '//' and a domain, e.g. \"//acme.example.com\""
                ));
            }
            if self.cse_id.is_none() {
                return Some("sp_id needs cse_id: absolute IDs name a CSE within the SP".into());
            }
        }
        None
    }
}

fn is_id_segment(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Why a look-up has no answer. Every one means "unknown".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("the CSE has no such resource (404)")]
    NotFound,
    #[error("the CSE refused the gateway's retrieve (HTTP {status}, RSC {rsc:?})")]
    Refused { status: u16, rsc: Option<u32> },
    #[error("the CSE did not answer within {0} ms")]
    Timeout(u64),
    #[error("the CSE could not be reached: {0}")]
    Unreachable(String),
    #[error("the answer is not a oneM2M resource: {0}")]
    Unparseable(String),
    #[error("the answer is longer than max_response_bytes = {0}")]
    TooLarge(usize),
    #[error("{0:?} is not a resource ID the gateway can retrieve")]
    BadId(String),
    #[error("group resolution over its bound: {0}")]
    OverBound(String),
}

impl LookupError {
    /// The metrics label.
    pub fn outcome(&self) -> &'static str {
        match self {
            LookupError::NotFound => "not-found",
            LookupError::Refused { .. } => "refused",
            LookupError::Timeout(_) => "timeout",
            LookupError::Unreachable(_) => "unreachable",
            LookupError::Unparseable(_) => "unparseable",
            LookupError::TooLarge(_) => "too-large",
            LookupError::BadId(_) => "bad-id",
            LookupError::OverBound(_) => "over-bound",
        }
    }
}

/// What the gateway learned about one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    pub ty: u32,
    /// `cnd` of a `<flexContainer>`, `mgd` of a `<mgmtObj>` (as decimal text).
    pub specialization: Option<String>,
    pub ri: Option<String>,
    pub rn: Option<String>,
    /// `<group>` only: the member type and the member IDs.
    pub mt: Option<u32>,
    pub mid: Vec<String>,
}

/// Reads a RETRIEVE answer: one `m2m:<shortname>` member holding the resource's attributes.
pub fn parse_resource(body: &[u8]) -> Result<Resource, LookupError> {
    let bad = |why: &str| LookupError::Unparseable(why.to_string());
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|error| LookupError::Unparseable(error.to_string()))?;
    let object = value.as_object().ok_or_else(|| bad("not a JSON object"))?;
    let mut members = object.iter();
    let (name, attributes) = match (members.next(), members.next()) {
        (Some(only), None) => only,
        _ => return Err(bad("not exactly one m2m:<resource> member")),
    };
    if !name.starts_with("m2m:") {
        return Err(LookupError::Unparseable(format!(
            "{name:?} is not a m2m:<resource> wrapper"
        )));
    }
    let attributes = attributes
        .as_object()
        .ok_or_else(|| bad("the resource is not an object"))?;
    let number = |key: &str| -> Result<Option<u32>, LookupError> {
        match attributes.get(key) {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| LookupError::Unparseable(format!("{key} is not a number"))),
        }
    };
    let text = |key: &str| -> Result<Option<String>, LookupError> {
        match attributes.get(key) {
            None => Ok(None),
            Some(value) => value
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| LookupError::Unparseable(format!("{key} is not a string"))),
        }
    };
    let ty = number("ty")?.ok_or_else(|| bad("no ty"))?;
    let specialization = match ty {
        TY_FLEX_CONTAINER => text("cnd")?,
        TY_MGMT_OBJ => number("mgd")?.map(|mgd| mgd.to_string()),
        _ => None,
    };
    let mut mid = Vec::new();
    if ty == TY_GROUP {
        if let Some(list) = attributes.get("mid") {
            for entry in list.as_array().ok_or_else(|| bad("mid is not a list"))? {
                mid.push(
                    entry
                        .as_str()
                        .ok_or_else(|| bad("a mid entry is not a string"))?
                        .to_string(),
                );
            }
        }
    }
    Ok(Resource {
        ty,
        specialization,
        ri: text("ri")?,
        rn: text("rn")?,
        mt: if ty == TY_GROUP { number("mt")? } else { None },
        mid,
    })
}

/// The HTTP path (canonical, as [`onem2m::normalise_path`] makes it) of a resource ID:
/// SP-relative `/cse-id/x` → `/~/cse-id/x`, absolute `//sp/cse-id/x` → `/_/sp/cse-id/x`,
/// CSE-relative `x` or `cse-in/x` → `/x`, `/cse-in/x`. Anything else — dot segments,
/// encoded separators, a query — is refused, so no ID can make the gateway retrieve
/// something other than the resource it names.
pub fn id_path(id: &str) -> Result<String, LookupError> {
    let bad = || LookupError::BadId(id.to_string());
    if id.is_empty() || id.contains(['?', '#', '%']) {
        return Err(bad());
    }
    let path = if let Some(absolute) = id.strip_prefix("//") {
        format!("/_/{absolute}")
    } else if let Some(relative) = id.strip_prefix('/') {
        format!("/~/{relative}")
    } else {
        format!("/{id}")
    };
    onem2m::normalise_path(&path)
        .map(|(_, canonical)| canonical)
        .map_err(|_| bad())
}

/// How IDs of the CSE's own resources are spelled: with `cse_id` (and `sp_id`) known, an
/// SP-relative or absolute ID of this CSE reduces to its CSE-relative form.
#[derive(Clone, Debug, Default)]
struct Spelling {
    cse_id: Option<String>,
    sp_id: Option<String>,
}

impl Spelling {
    /// The CSE-relative form of an ID of this CSE; other IDs as they are.
    fn reduce<'a>(&self, id: &'a str) -> &'a str {
        let Some(cse_id) = &self.cse_id else {
            return id;
        };
        if let Some(sp_id) = &self.sp_id {
            if let Some(rest) = id
                .strip_prefix(sp_id.as_str())
                .and_then(|rest| rest.strip_prefix(cse_id.as_str()))
                .and_then(|rest| rest.strip_prefix('/'))
            {
                return rest;
            }
        }
        id.strip_prefix(cse_id.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|rest| !rest.is_empty())
            .unwrap_or(id)
    }

    /// Every spelling of `id` an originator may use: CSE-relative, SP-relative, absolute.
    fn forms(&self, id: &str) -> Vec<String> {
        let reduced = self.reduce(id);
        let mut forms = vec![id.to_string()];
        if reduced.starts_with('/') {
            return forms; // another CSE's ID: one spelling
        }
        forms.push(reduced.to_string());
        if let Some(cse_id) = &self.cse_id {
            forms.push(format!("{cse_id}/{reduced}"));
            if let Some(sp_id) = &self.sp_id {
                forms.push(format!("{sp_id}{cse_id}/{reduced}"));
            }
        }
        forms.sort();
        forms.dedup();
        forms
    }
}

/// A bounded table of learned values with their expiry.
struct Cache<T> {
    entries: HashMap<String, (T, Instant)>,
    max: usize,
}

impl<T: Clone> Cache<T> {
    fn new(max: usize) -> Cache<T> {
        Cache {
            entries: HashMap::new(),
            max,
        }
    }

    /// The value for `key` if it is still valid at `at`.
    fn get(&self, key: &str, at: Instant) -> Option<(T, Instant)> {
        self.entries
            .get(key)
            .filter(|(_, expires)| *expires > at)
            .cloned()
    }

    fn insert(&mut self, key: String, value: T, expires: Instant) {
        if self.entries.len() >= self.max && !self.entries.contains_key(&key) {
            let now = Instant::now();
            self.entries.retain(|_, (_, expires)| *expires > now);
            // Still full: the entry nearest to expiry goes (one scan; only when full).
            if self.entries.len() >= self.max {
                if let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, expires))| *expires)
                    .map(|(key, _)| key.clone())
                {
                    self.entries.remove(&oldest);
                }
            }
        }
        self.entries.insert(key, (value, expires));
    }
}

/// Single flight: concurrent askers for one key share one look-up. The first asker's
/// future runs it; if that asker goes away, the next one takes over (`OnceCell`).
struct Flights<T> {
    running: Mutex<HashMap<String, Arc<OnceCell<T>>>>,
}

impl<T: Clone> Flights<T> {
    fn new() -> Flights<T> {
        Flights {
            running: Mutex::new(HashMap::new()),
        }
    }

    async fn run<F: std::future::Future<Output = T>>(
        &self,
        key: &str,
        work: impl FnOnce() -> F,
    ) -> T {
        let cell = self
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone();
        let value = cell.get_or_init(work).await.clone();
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if running.get(key).is_some_and(|now| Arc::ptr_eq(now, &cell)) {
            running.remove(key);
        }
        value
    }
}

/// One resolved group: its members (every spelling) and the `ri`/`rn` of every group read
/// on the way (an UPDATE or DELETE of any of them invalidates it).
#[derive(Debug, Default)]
pub struct Resolved {
    pub members: HashSet<String>,
    pub groups: HashSet<String>,
}

/// The gateway's look-ups at the upstream CSE and their caches.
pub struct CseView {
    config: LookupConfig,
    spelling: Spelling,
    types: Mutex<Cache<Arc<Resource>>>,
    groups: Mutex<Cache<Arc<Resolved>>>,
    type_flights: Flights<Result<Arc<Resource>, LookupError>>,
    group_flights: Flights<Result<(Arc<Resolved>, Instant), LookupError>>,
    /// Bumped by every invalidation: a look-up that started before one does not store its
    /// (possibly stale) answer.
    generation: AtomicU64,
    next_request: AtomicU64,
}

impl std::fmt::Debug for CseView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CseView")
            .field("originator", &self.config.originator)
            .finish_non_exhaustive()
    }
}

impl CseView {
    pub fn new(config: &LookupConfig) -> CseView {
        CseView {
            spelling: Spelling {
                cse_id: config.cse_id.clone(),
                sp_id: config.sp_id.clone(),
            },
            types: Mutex::new(Cache::new(config.max_entries)),
            groups: Mutex::new(Cache::new(config.max_entries)),
            type_flights: Flights::new(),
            group_flights: Flights::new(),
            generation: AtomicU64::new(0),
            next_request: AtomicU64::new(1),
            config: config.clone(),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms)
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(self.config.ttl_s)
    }

    /// The type (and specialization) of the resource at `path`, a canonical target path
    /// ([`onem2m::BindingRequest::path`]).
    pub async fn target(
        &self,
        upstream: &Upstream,
        metrics: &Metrics,
        path: &str,
    ) -> Result<Arc<Resource>, LookupError> {
        if let Some((hit, _)) = self.lock_types().get(path, Instant::now()) {
            metrics.cse_lookup("type", "cached");
            return Ok(hit);
        }
        self.type_flights
            .run(path, || async {
                let generation = self.generation.load(Ordering::SeqCst);
                let outcome = tokio::time::timeout(self.timeout(), self.retrieve(upstream, path))
                    .await
                    .unwrap_or(Err(LookupError::Timeout(self.config.timeout_ms)));
                metrics.cse_lookup(
                    "type",
                    outcome.as_ref().map_or_else(|e| e.outcome(), |_| "ok"),
                );
                let resource = Arc::new(outcome?);
                let mut types = self.lock_types();
                if self.generation.load(Ordering::SeqCst) == generation {
                    types.insert(
                        path.to_string(),
                        resource.clone(),
                        Instant::now() + self.ttl(),
                    );
                }
                Ok(resource)
            })
            .await
    }

    /// The members of the `<group>` `id` (nested groups included), and until when they hold.
    pub async fn group(
        &self,
        upstream: &Upstream,
        metrics: &Metrics,
        id: &str,
    ) -> Result<(Arc<Resolved>, Instant), LookupError> {
        let key = self.spelling.reduce(id).to_string();
        // A group about to expire is asked again now, so that what a decision reads right
        // after this is still valid when the plugin asks.
        let margin = (self.timeout() + Duration::from_secs(1)).min(self.ttl() / 2);
        if let Some(hit) = self.lock_groups().get(&key, Instant::now() + margin) {
            metrics.cse_lookup("group", "cached");
            return Ok(hit);
        }
        self.group_flights
            .run(&key, || async {
                let generation = self.generation.load(Ordering::SeqCst);
                let outcome = tokio::time::timeout(self.timeout(), self.resolve(upstream, id))
                    .await
                    .unwrap_or(Err(LookupError::Timeout(self.config.timeout_ms)));
                metrics.cse_lookup(
                    "group",
                    outcome.as_ref().map_or_else(|e| e.outcome(), |_| "ok"),
                );
                let resolved = Arc::new(outcome?);
                let expires = Instant::now() + self.ttl();
                let mut groups = self.lock_groups();
                if self.generation.load(Ordering::SeqCst) == generation {
                    groups.insert(key.clone(), resolved.clone(), expires);
                }
                Ok((resolved, expires))
            })
            .await
    }

    /// Follows `id`'s `mid`: breadth first, each group once (cycles), `group_depth` levels,
    /// at most `group_max_lookups` retrievals and `group_max_members` members.
    async fn resolve(&self, upstream: &Upstream, id: &str) -> Result<Resolved, LookupError> {
        let config = &self.config;
        let mut resolved = Resolved::default();
        let mut visited = HashSet::new();
        let mut lookups = 0;
        // (ID, depth, whether it must be a group: false for a mixed group's members)
        let mut queue = VecDeque::from([(id.to_string(), 0usize, true)]);
        while let Some((member, depth, must_be_group)) = queue.pop_front() {
            if !visited.insert(self.spelling.reduce(&member).to_string()) {
                continue;
            }
            if lookups == config.group_max_lookups {
                return Err(LookupError::OverBound(format!(
                    "more than group_max_lookups = {} retrievals",
                    config.group_max_lookups
                )));
            }
            lookups += 1;
            let resource = match self.retrieve(upstream, &id_path(&member)?).await {
                Ok(resource) => resource,
                // A mixed group's member the gateway may not read is still a member.
                Err(_) if !must_be_group => {
                    self.add_member(&mut resolved, &member)?;
                    continue;
                }
                Err(error) => return Err(error),
            };
            if resource.ty != TY_GROUP {
                if must_be_group && depth == 0 {
                    // Not a group at all (e.g. an AE-ID in `acor`): no members.
                    return Ok(resolved);
                }
                self.add_member(&mut resolved, &member)?;
                continue;
            }
            resolved.groups.extend(resource.ri.iter().cloned());
            resolved.groups.extend(resource.rn.iter().cloned());
            for entry in &resource.mid {
                let (entry, fan_out) = match entry.strip_suffix("/fopt") {
                    Some(group) => (group, true),
                    None => (entry.as_str(), false),
                };
                let nested = fan_out || resource.mt == Some(TY_GROUP);
                let mixed = resource.mt == Some(MT_MIXED);
                if (nested || mixed) && depth < config.group_depth {
                    queue.push_back((entry.to_string(), depth + 1, nested));
                } else if !nested {
                    self.add_member(&mut resolved, entry)?;
                }
                // A nested group below group_depth adds no members.
            }
        }
        Ok(resolved)
    }

    fn add_member(&self, resolved: &mut Resolved, member: &str) -> Result<(), LookupError> {
        if resolved.members.len() >= self.config.group_max_members {
            return Err(LookupError::OverBound(format!(
                "more than group_max_members = {} members",
                self.config.group_max_members
            )));
        }
        resolved.members.extend(self.spelling.forms(member));
        Ok(())
    }

    /// One RETRIEVE as the gateway: the canonical `path`, `rcn=1`, the configured
    /// originator, a request id of the gateway's own.
    async fn retrieve(&self, upstream: &Upstream, path: &str) -> Result<Resource, LookupError> {
        let mut headers = HeaderMap::new();
        let originator = HeaderValue::from_str(&self.config.originator)
            .map_err(|_| LookupError::BadId(self.config.originator.clone()))?;
        headers.insert(X_M2M_ORIGIN, originator);
        let ri = format!(
            "palisade-lookup-{}",
            self.next_request.fetch_add(1, Ordering::Relaxed)
        );
        headers.insert(X_M2M_RI, HeaderValue::from_str(&ri).expect("ASCII"));
        headers.insert(X_M2M_RVI, HeaderValue::from_static("3"));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let (status, answer_headers, body): (StatusCode, HeaderMap, Bytes) = upstream
            .lookup(
                &format!("{path}?rcn=1"),
                headers,
                self.config.max_response_bytes,
            )
            .await?;
        let rsc = answer_headers
            .get(X_M2M_RSC)
            .and_then(|value| value.to_str().ok()?.parse().ok());
        if status == StatusCode::NOT_FOUND || rsc == Some(4004) {
            return Err(LookupError::NotFound);
        }
        if !status.is_success() {
            return Err(LookupError::Refused {
                status: status.as_u16(),
                rsc,
            });
        }
        parse_resource(&body)
    }

    /// After a successful `operation` on `path` through the proxy: drops what it may have
    /// made stale (see the module documentation).
    pub fn after(&self, operation: Operation, path: &str) {
        if !matches!(operation, Operation::Delete | Operation::Update) {
            return;
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
        if operation == Operation::Delete {
            self.lock_types().entries.clear();
        }
        let last = path.rsplit('/').next().unwrap_or(path);
        // The path is canonical (percent-encoded); `ri`/`rn` are plain: compare decoded.
        let last = onem2m::normalise_path(&format!("/{last}"))
            .map(|(decoded, _)| decoded[1..].to_string())
            .unwrap_or_else(|_| last.to_string());
        self.lock_groups()
            .entries
            .retain(|_, (resolved, _)| !resolved.groups.contains(&last));
    }

    fn lock_types(&self) -> std::sync::MutexGuard<'_, Cache<Arc<Resource>>> {
        self.types
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_groups(&self) -> std::sync::MutexGuard<'_, Cache<Arc<Resolved>>> {
        self.groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What the look-ups before one decision learned, for the request and the log.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Why the target's type stayed unknown, when it was looked up and not learned.
    pub type_unknown: Option<LookupError>,
    /// Groups of the app whose membership stayed unknown, with why.
    pub groups_unknown: Vec<(String, LookupError)>,
}

/// One application's `cse_groups`, as its authorizers see members (pseudonyms unless the
/// app has consent, SER-011): refreshed before its proxied decisions, read by the `groups`
/// capability without waiting.
#[derive(Debug)]
pub struct CseGroups {
    /// The configured group IDs, each with its reduced key.
    ids: Vec<(String, String)>,
    spelling: Spelling,
    /// Reduced group key → the group as the app sees it.
    resolved: RwLock<HashMap<String, AppGroup>>,
}

/// One group's members as an app's authorizers see them.
#[derive(Debug)]
struct AppGroup {
    /// The view's resolution they were made from (the same one: nothing to redo).
    from: Arc<Resolved>,
    members: HashSet<String>,
    until: Instant,
}

impl CseGroups {
    pub fn new(view: &CseView, ids: &[String]) -> CseGroups {
        CseGroups {
            ids: ids
                .iter()
                .map(|id| (id.clone(), view.spelling.reduce(id).to_string()))
                .collect(),
            spelling: view.spelling.clone(),
            resolved: RwLock::new(HashMap::new()),
        }
    }

    /// Brings every group up to date before a decision: what the view holds (the same
    /// resolution is reused as it is), else a look-up. A group that cannot be learned is
    /// dropped: unknown, no members.
    pub async fn refresh(
        &self,
        view: &CseView,
        upstream: &Upstream,
        metrics: &Metrics,
        route: &AppRoute,
    ) -> Vec<(String, LookupError)> {
        let mut failures = Vec::new();
        for (id, key) in &self.ids {
            match view.group(upstream, metrics, id).await {
                Ok((resolved, until)) => {
                    let current = self
                        .read()
                        .get(key)
                        .is_some_and(|entry| Arc::ptr_eq(&entry.from, &resolved));
                    if current {
                        continue;
                    }
                    let members = match &route.pseudonyms {
                        None => resolved.members.clone(),
                        // Members are compared as the authorizers see originators.
                        Some(pseudonyms) => resolved
                            .members
                            .iter()
                            .filter_map(|member| pseudonyms.pseudonym(member).ok())
                            .collect(),
                    };
                    self.write().insert(
                        key.clone(),
                        AppGroup {
                            from: resolved,
                            members,
                            until,
                        },
                    );
                }
                Err(error) => {
                    self.write().remove(key);
                    failures.push((id.clone(), error));
                }
            }
        }
        failures
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, AppGroup>> {
        self.resolved
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, AppGroup>> {
        self.resolved
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl MembershipSource for CseGroups {
    fn is_member(&self, group: &str, member: &str) -> bool {
        let key = self.spelling.reduce(group);
        self.read()
            .get(key)
            .is_some_and(|group| group.until > Instant::now() && group.members.contains(member))
    }
}

/// Fills in what `access` needs from the CSE before its decision: the target's type for a
/// CREATE (the parent, TS-0003 §7.1.5) and the app's `cse_groups`.
pub async fn prepare(
    upstream: &Upstream,
    metrics: &Metrics,
    route: &AppRoute,
    access: &mut AccessRequest,
    path: &str,
) -> Prepared {
    let mut prepared = Prepared::default();
    let Some(view) = upstream.view() else {
        return prepared;
    };
    if access.operation == Operation::Create {
        match view.target(upstream, metrics, path).await {
            Ok(resource) => {
                access.target_resource_type = Some(resource.ty);
                access.target_specialization = resource.specialization.clone();
            }
            Err(error) => prepared.type_unknown = Some(error),
        }
    }
    if let Some(groups) = upstream.groups(&route.name) {
        prepared.groups_unknown = groups.refresh(view, upstream, metrics, route).await;
    }
    prepared
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_as_one_wrapped_resource() {
        let container = parse_resource(br#"{"m2m:cnt":{"ty":3,"ri":"cnt1","rn":"lamp"}}"#).unwrap();
        assert_eq!((container.ty, container.rn.as_deref()), (3, Some("lamp")));
        assert_eq!(container.specialization, None);
        let flex = parse_resource(
            br#"{"m2m:fcnt":{"ty":28,"cnd":"org.onem2m.home.moduleclass.binarySwitch"}}"#,
        )
        .unwrap();
        assert_eq!(
            flex.specialization.as_deref(),
            Some("org.onem2m.home.moduleclass.binarySwitch")
        );
        let mgmt = parse_resource(br#"{"m2m:fwr":{"ty":13,"mgd":1001}}"#).unwrap();
        assert_eq!(mgmt.specialization.as_deref(), Some("1001"));
        let group =
            parse_resource(br#"{"m2m:grp":{"ty":9,"mt":2,"mid":["CAE1","CAE2"]}}"#).unwrap();
        assert_eq!((group.mt, group.mid.len()), (Some(2), 2));
        for bad in [
            &b"[]"[..],
            b"{}",
            b"not json",
            br#"{"m2m:cnt":{"rn":"x"}}"#,
            br#"{"m2m:cnt":{"ty":"3"}}"#,
            br#"{"m2m:cnt":{"ty":-3}}"#,
            br#"{"m2m:cnt":{"ty":3},"m2m:cin":{"ty":4}}"#,
            br#"{"cnt":{"ty":3}}"#,
            br#"{"m2m:cnt":[3]}"#,
            br#"{"m2m:grp":{"ty":9,"mid":"CAE1"}}"#,
            br#"{"m2m:grp":{"ty":9,"mid":[1]}}"#,
            br#"{"m2m:fcnt":{"ty":28,"cnd":5}}"#,
        ] {
            assert!(
                matches!(parse_resource(bad), Err(LookupError::Unparseable(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn ids_become_plain_paths_or_are_refused() {
        assert_eq!(id_path("/id-in/grp1").unwrap(), "/~/id-in/grp1");
        assert_eq!(
            id_path("//acme.example.com/id-in/grp1").unwrap(),
            "/_/acme.example.com/id-in/grp1"
        );
        assert_eq!(id_path("grp1").unwrap(), "/grp1");
        assert_eq!(id_path("cse-in/grp1").unwrap(), "/cse-in/grp1");
        for bad in [
            "",
            "/id-in/../admin",
            "/id-in/grp1?rcn=4",
            "/id-in/grp1#x",
            "/id-in/%2e%2e",
            "/id-in//grp1",
            "grp1/",
            "/id-in/grp\n1",
            "///x",
        ] {
            assert!(id_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_of_this_cse_have_every_spelling() {
        let spelling = Spelling {
            cse_id: Some("/id-in".into()),
            sp_id: Some("//acme.example.com".into()),
        };
        assert_eq!(spelling.reduce("/id-in/CAE1"), "CAE1");
        assert_eq!(spelling.reduce("//acme.example.com/id-in/CAE1"), "CAE1");
        assert_eq!(spelling.reduce("CAE1"), "CAE1");
        assert_eq!(spelling.reduce("/id-other/CAE1"), "/id-other/CAE1");
        assert_eq!(spelling.reduce("/id-in"), "/id-in");
        assert_eq!(spelling.reduce("/id-inx/CAE1"), "/id-inx/CAE1");
        assert_eq!(
            spelling.forms("CAE1"),
            vec!["//acme.example.com/id-in/CAE1", "/id-in/CAE1", "CAE1"]
        );
        assert_eq!(spelling.forms("/id-other/CAE1"), vec!["/id-other/CAE1"]);
        // Without cse_id nothing is assumed about other spellings.
        let plain = Spelling::default();
        assert_eq!(plain.reduce("/id-in/CAE1"), "/id-in/CAE1");
        assert_eq!(plain.forms("CAE1"), vec!["CAE1"]);
    }

    #[test]
    fn the_cache_stays_within_its_size() {
        let mut cache = Cache::new(3);
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        for (index, key) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            cache.insert(key.into(), index, later + Duration::from_secs(index as u64));
        }
        assert_eq!(cache.entries.len(), 3);
        // The entries nearest to expiry made room.
        assert!(cache.get("a", now).is_none() && cache.get("b", now).is_none());
        assert_eq!(cache.get("e", now).map(|(v, _)| v), Some(4));
        // Expired entries are not answered.
        assert!(cache.get("e", later + Duration::from_secs(10)).is_none());
    }

    #[test]
    fn lookup_settings_are_checked() {
        let config = |text: &str| toml::from_str::<LookupConfig>(text);
        let good = config("originator = \"/id-mn\"").unwrap();
        assert_eq!(
            (good.timeout_ms, good.ttl_s, good.group_depth),
            (1000, 60, 3)
        );
        assert!(good.problem().is_none());
        assert!(config("originator = \"a b\"").is_err());
        assert!(config("originator = \"\"").is_err());
        assert!(config("originator = \"x\"\ntimeout_ms = 0").is_err());
        assert!(config("originator = \"x\"\nmax_entries = 0").is_err());
        assert!(config("originator = \"x\"\nteleport = 1").is_err());
        let problem = |text: &str| config(text).unwrap().problem();
        assert!(problem("originator = \"x\"\ncse_id = \"id-in\"").is_some());
        assert!(problem("originator = \"x\"\ncse_id = \"/id-in/x\"").is_some());
        assert!(problem("originator = \"x\"\nsp_id = \"//sp\"").is_some());
        assert!(problem("originator = \"x\"\ncse_id = \"/id-in\"\nsp_id = \"sp\"").is_some());
        assert!(
            problem("originator = \"x\"\ncse_id = \"/id-in\"\nsp_id = \"//sp.example\"").is_none()
        );
    }
}
