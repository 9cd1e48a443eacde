//! One budget of idle warm instances for every application of an engine (issue #18).
//!
//! Every live instance, idle or running a call, holds a slot of the pooling allocator, and
//! the pool is fixed ([`super::EngineConfig::pool_instances`]). Warm instances kept per
//! application for ever filled it: with more applications than slots, the next
//! application's first call found no slot and was denied, because of what other
//! applications kept idle. So the idle warm instances of all applications share one budget
//! ([`super::EngineConfig::max_idle_instances`], below the pool size so that calls in
//! flight find free slots), and when it is full the application used least recently gives
//! one up. A cold application pays an instantiation, never a deny (SER-001: one
//! application's load never fails another's calls).
//!
//! Only idle instances are ever taken: an instance running a call belongs to that call
//! until it returns, so an attacker who makes many applications decide can make a busy
//! application's next call instantiate afresh (slower), never fail. And when the pool is
//! exhausted anyway (calls in flight, fresh-per-request instances, a component holding more
//! core instances than the average), instantiation gives idle instances back and tries
//! again ([`WarmRegistry::instantiate`]) before it fails closed.
//!
//! Order is least recently used at the grain of the list's changes: a plugin moves to the
//! front when it gives an instance back for the first time since the last eviction or the
//! last plugin that joined the list, so the warm path of busy plugins takes no engine-wide
//! lock while the set of warm plugins is stable, and one lock per call while the budget is
//! full (when the call also costs an instantiation). Plugins used since the last change are
//! all ahead of those that were not; among themselves, by their first use since it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Most idle instances one instantiation gives back to find room in an exhausted pool: a
/// component needs at most a few more core instances, memories and tables than an average
/// one, so a handful of evictions make room when any can; the bound keeps a pool full of
/// calls in flight from turning one instantiation into a sweep of every idle instance.
const MAX_EVICTIONS_PER_INSTANTIATION: usize = 16;

/// "No node": an end of the list, or a set that is not in it.
const NIL: usize = usize::MAX;

/// A plugin's idle warm instances, as the registry sees them.
pub(crate) trait IdleSet: Send + Sync {
    /// Its place in the registry.
    fn link(&self) -> &WarmLink;

    /// Takes its oldest idle instance out, for the caller to drop outside every lock, and
    /// says whether it is empty afterwards; when it is, it calls [`WarmLink::unlist`]
    /// under its own lock (see [`WarmLink`]). Called with the registry's lock held.
    fn evict_oldest(&self) -> (Option<Evicted>, bool);
}

/// An evicted instance, dropped (its pool slot released) outside every lock.
pub(crate) type Evicted = Box<dyn Send>;

/// Where an [`IdleSet`] is in the registry's list.
///
/// The set's own lock orders what matters: an instance is pushed, and `touched` read,
/// under it; the evictor empties the set and unlists it under it. So a set that reads
/// `touched` equal to the registry's generation after a push is listed, and the instance
/// it pushed can be found by the evictor.
pub(crate) struct WarmLink {
    /// The registry generation in which the set last moved to the front, or
    /// [`WarmLink::UNLISTED`].
    touched: AtomicU64,
    /// Its node in the list, or [`NIL`]; written only under the registry's lock.
    node: AtomicUsize,
}

impl WarmLink {
    const UNLISTED: u64 = 0;

    /// Not in any list yet.
    pub(crate) fn new() -> WarmLink {
        WarmLink {
            touched: AtomicU64::new(Self::UNLISTED),
            node: AtomicUsize::new(NIL),
        }
    }

    /// Whether the set is listed and has moved to the front since the last eviction. Read
    /// under the set's lock, right after a push.
    pub(crate) fn is_fresh(&self, registry: &WarmRegistry) -> bool {
        self.touched.load(Ordering::Acquire) == registry.generation.load(Ordering::Acquire)
    }

    /// Marks the set as not listed: called under the set's lock when an eviction emptied it
    /// (the registry then takes its node out).
    pub(crate) fn unlist(&self) {
        self.touched.store(Self::UNLISTED, Ordering::Release);
    }
}

struct Node {
    set: Option<Weak<dyn IdleSet>>,
    prev: usize,
    next: usize,
}

/// A doubly linked list of sets in a slab: front = used most recently.
struct Lru {
    nodes: Vec<Node>,
    free: Vec<usize>,
    head: usize,
    tail: usize,
}

impl Lru {
    fn push_front(&mut self, set: Weak<dyn IdleSet>) -> usize {
        let node = Node {
            set: Some(set),
            prev: NIL,
            next: self.head,
        };
        let at = match self.free.pop() {
            Some(at) => {
                self.nodes[at] = node;
                at
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        if self.head != NIL {
            self.nodes[self.head].prev = at;
        } else {
            self.tail = at;
        }
        self.head = at;
        at
    }

    fn unlink(&mut self, at: usize) {
        let (prev, next) = (self.nodes[at].prev, self.nodes[at].next);
        if prev != NIL {
            self.nodes[prev].next = next;
        } else {
            self.head = next;
        }
        if next != NIL {
            self.nodes[next].prev = prev;
        } else {
            self.tail = prev;
        }
    }

    fn move_to_front(&mut self, at: usize) {
        if self.head == at {
            return;
        }
        self.unlink(at);
        self.nodes[at].prev = NIL;
        self.nodes[at].next = self.head;
        if self.head != NIL {
            self.nodes[self.head].prev = at;
        } else {
            self.tail = at;
        }
        self.head = at;
    }

    /// Takes the node out and frees it. Dropping the `Weak` never runs a set's `Drop`.
    fn remove(&mut self, at: usize) {
        self.unlink(at);
        self.nodes[at].set = None;
        self.free.push(at);
    }
}

/// The engine-wide budget and order of idle warm instances. See the module documentation.
pub(crate) struct WarmRegistry {
    /// Most idle instances kept across all plugins.
    budget: usize,
    idle: AtomicUsize,
    /// Advanced by every eviction and every set joining the list: a set whose `touched` is
    /// older moves to the front at its next return.
    generation: AtomicU64,
    evictions: AtomicU64,
    lru: Mutex<Lru>,
}

impl WarmRegistry {
    /// A registry keeping at most `budget` idle instances.
    pub(crate) fn new(budget: usize) -> WarmRegistry {
        WarmRegistry {
            budget,
            idle: AtomicUsize::new(0),
            // Above `WarmLink::UNLISTED`, and it only grows.
            generation: AtomicU64::new(1),
            evictions: AtomicU64::new(0),
            lru: Mutex::new(Lru {
                nodes: Vec::new(),
                free: Vec::new(),
                head: NIL,
                tail: NIL,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Lru> {
        // The list is consistent after every statement that can panic (none do).
        self.lru
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Most idle instances kept across all plugins; 0 keeps none.
    pub(crate) fn budget(&self) -> usize {
        self.budget
    }

    /// Idle instances kept now, across all plugins.
    pub(crate) fn idle(&self) -> usize {
        self.idle.load(Ordering::Relaxed)
    }

    /// Idle instances given up so far to keep the budget or to find a slot.
    pub(crate) fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// A set took one of its idle instances for a call.
    pub(crate) fn took(&self) {
        self.idle.fetch_sub(1, Ordering::Relaxed);
    }

    /// A set dropped `count` idle instances of its own (it is going away, or was cleared).
    pub(crate) fn dropped(&self, count: usize) {
        if count > 0 {
            self.idle.fetch_sub(count, Ordering::Relaxed);
        }
    }

    /// A set is about to push an idle instance: called under the set's lock, before the
    /// push, so that the count never falls below the instances there are. (Counted after the
    /// push, a call on another thread could take the instance and count it out first.)
    pub(crate) fn adding(&self) {
        self.idle.fetch_add(1, Ordering::Relaxed);
    }

    /// `set` just took an instance back (counted by [`WarmRegistry::adding`] and pushed
    /// under its lock, where it read `fresh` from [`WarmLink::is_fresh`]). Moves it to the
    /// front when it is not fresh, then keeps the budget by evicting the least recently used
    /// idle instance, which is dropped here outside the lock.
    pub(crate) fn returned<S: IdleSet + 'static>(&self, set: &Arc<S>, fresh: bool) {
        let idle = self.idle.load(Ordering::Relaxed);
        if !fresh {
            let mut lru = self.lock();
            let link = set.link();
            let at = link.node.load(Ordering::Relaxed);
            if at == NIL {
                let weak: Weak<dyn IdleSet> = Arc::downgrade(set) as Weak<dyn IdleSet>;
                link.node.store(lru.push_front(weak), Ordering::Relaxed);
                // The others move ahead of it again at their next return.
                self.generation.fetch_add(1, Ordering::AcqRel);
            } else {
                lru.move_to_front(at);
            }
            link.touched
                .store(self.generation.load(Ordering::Acquire), Ordering::Release);
        }
        if idle > self.budget {
            drop(self.evict_one());
        }
    }

    /// Takes the least recently used idle instance out of its set; `None` when no set holds
    /// one. The caller drops it (releasing its slot) after the lock is gone.
    pub(crate) fn evict_one(&self) -> Option<Evicted> {
        // Sets upgraded while looking are dropped after the lock: the last reference to a
        // plugin that is going away runs its `Drop`, which takes this lock.
        let mut held: Vec<Arc<dyn IdleSet>> = Vec::new();
        let evicted = {
            let mut lru = self.lock();
            let mut at = lru.tail;
            let mut evicted = None;
            while at != NIL {
                let prev = lru.nodes[at].prev;
                // A set whose plugin is being dropped takes its own node out in `Drop`.
                if let Some(set) = lru.nodes[at].set.as_ref().and_then(Weak::upgrade) {
                    let (instance, empty) = set.evict_oldest();
                    if empty {
                        lru.remove(at);
                        set.link().node.store(NIL, Ordering::Relaxed);
                    }
                    held.push(set);
                    if instance.is_some() {
                        self.idle.fetch_sub(1, Ordering::Relaxed);
                        self.evictions.fetch_add(1, Ordering::Relaxed);
                        self.generation.fetch_add(1, Ordering::AcqRel);
                        evicted = instance;
                        break;
                    }
                }
                at = prev;
            }
            evicted
        };
        drop(held);
        evicted
    }

    /// Takes `link`'s set out of the list for good: its plugin is being dropped.
    pub(crate) fn forget(&self, link: &WarmLink) {
        let mut lru = self.lock();
        let at = link.node.swap(NIL, Ordering::Relaxed);
        if at != NIL {
            lru.remove(at);
        }
    }

    /// Runs `attempt` (which makes an instance in a store of its own) and, while it fails
    /// because the pool is exhausted, gives idle instances back and tries again; fails
    /// closed with the pool's error when there is nothing left to give back.
    pub(crate) fn instantiate<T, E: PoolError>(
        &self,
        mut attempt: impl FnMut() -> Result<T, E>,
    ) -> Result<T, E> {
        let mut evicted = 0;
        loop {
            match attempt() {
                Err(error)
                    if evicted < MAX_EVICTIONS_PER_INSTANTIATION && error.pool_exhausted() =>
                {
                    match self.evict_one() {
                        Some(instance) => drop(instance),
                        None => return Err(error),
                    }
                    evicted += 1;
                }
                other => return other,
            }
        }
    }
}

/// An instantiation's error, which may say the pool is exhausted.
pub(crate) trait PoolError {
    /// Whether the pool had no room left (a slot, core instance, memory or table).
    fn pool_exhausted(&self) -> bool;
}

impl PoolError for wasmtime::Error {
    fn pool_exhausted(&self) -> bool {
        self.is::<wasmtime::PoolConcurrencyLimitError>()
    }
}

/// wasmtime's error with what the caller keeps beside it (e.g. its store's state).
impl<X> PoolError for (wasmtime::Error, X) {
    fn pool_exhausted(&self) -> bool {
        self.0.pool_exhausted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A set of numbered "instances" (the number of the return that made each).
    struct Set {
        items: Mutex<std::collections::VecDeque<u32>>,
        link: WarmLink,
    }

    impl IdleSet for Set {
        fn link(&self) -> &WarmLink {
            &self.link
        }
        fn evict_oldest(&self) -> (Option<Evicted>, bool) {
            let mut items = self.items.lock().unwrap();
            let item = items.pop_front().map(|item| Box::new(item) as Evicted);
            let empty = items.is_empty();
            if empty {
                self.link.unlist();
            }
            (item, empty)
        }
    }

    fn set() -> Arc<Set> {
        Arc::new(Set {
            items: Mutex::new(Default::default()),
            link: WarmLink::new(),
        })
    }

    fn give_back(registry: &WarmRegistry, set: &Arc<Set>, item: u32) {
        let fresh = {
            let mut items = set.items.lock().unwrap();
            registry.adding();
            items.push_back(item);
            set.link.is_fresh(registry)
        };
        registry.returned(set, fresh);
    }

    fn len(set: &Set) -> usize {
        set.items.lock().unwrap().len()
    }

    #[test]
    fn the_least_recently_used_set_gives_up_an_instance_when_the_budget_is_full() {
        let registry = WarmRegistry::new(3);
        let sets: Vec<Arc<Set>> = (0..4).map(|_| set()).collect();
        for (n, set) in sets.iter().take(3).enumerate() {
            give_back(&registry, set, n as u32);
        }
        assert_eq!(registry.idle(), 3);
        assert_eq!(registry.evictions(), 0);
        // Set 0 is used again: set 1 is now the least recently used.
        give_back(&registry, &sets[0], 10);
        assert_eq!(registry.idle(), 3, "the budget holds");
        assert_eq!(len(&sets[1]), 0, "the least recently used set gave one up");
        assert_eq!(len(&sets[0]), 2);
        // A new set's instance evicts set 2's, the next least recently used.
        give_back(&registry, &sets[3], 11);
        assert_eq!(len(&sets[2]), 0);
        assert_eq!(registry.idle(), 3);
        assert_eq!(registry.evictions(), 2);
        // Emptied sets left the list; the rest are in it, most recent first.
        let lru = registry.lock();
        let mut order = Vec::new();
        let mut at = lru.head;
        while at != NIL {
            order.push(at);
            at = lru.nodes[at].next;
        }
        assert_eq!(order.len(), 2);
        drop(lru);
        assert_eq!(sets[1].link.node.load(Ordering::Relaxed), NIL);
        assert_eq!(sets[3].link.node.load(Ordering::Relaxed), order[0]);
    }

    /// Takes the most recent item, as a call takes an idle instance.
    fn take(registry: &WarmRegistry, set: &Set) -> Option<u32> {
        let item = set.items.lock().unwrap().pop_back();
        if item.is_some() {
            registry.took();
        }
        item
    }

    #[test]
    fn the_count_holds_when_calls_take_what_other_calls_give_back() {
        // Counted after the push, a taker on another thread could count an instance out
        // before it was counted in, and the count wrapped below zero (seen under load in
        // `tests/core/swap.rs`). Two threads give back while two take, and the takers check
        // the count right after each take.
        let registry = Arc::new(WarmRegistry::new(1 << 20));
        let shared = set();
        let giving = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let givers: Vec<_> = (0..2)
            .map(|t| {
                let (registry, shared) = (registry.clone(), shared.clone());
                std::thread::spawn(move || {
                    for i in 0..50_000u32 {
                        give_back(&registry, &shared, t * 100_000 + i);
                    }
                })
            })
            .collect();
        let takers: Vec<_> = (0..2)
            .map(|_| {
                let (registry, shared, giving) = (registry.clone(), shared.clone(), giving.clone());
                std::thread::spawn(move || {
                    while giving.load(Ordering::Relaxed) {
                        if take(&registry, &shared).is_some() {
                            let idle = registry.idle();
                            assert!(idle < 1 << 20, "the count wrapped below zero: {idle}");
                        }
                    }
                })
            })
            .collect();
        for giver in givers {
            giver.join().unwrap();
        }
        giving.store(false, Ordering::Relaxed);
        for taker in takers {
            taker.join().unwrap();
        }
        assert_eq!(registry.idle(), len(&shared));
    }

    #[test]
    fn a_forgotten_set_leaves_the_list_and_a_budget_of_zero_keeps_nothing() {
        let registry = WarmRegistry::new(2);
        let (a, b) = (set(), set());
        give_back(&registry, &a, 1);
        give_back(&registry, &b, 2);
        registry.forget(&a.link);
        registry.dropped(len(&a));
        drop(a);
        assert_eq!(registry.idle(), 1);
        assert!(registry.evict_one().is_some(), "b's instance");
        assert!(registry.evict_one().is_none(), "nothing is left");
        assert_eq!(registry.idle(), 0);

        let none = WarmRegistry::new(0);
        let c = set();
        give_back(&none, &c, 1);
        assert_eq!((none.idle(), len(&c)), (0, 0));
    }

    #[test]
    fn an_exhausted_pool_is_retried_after_evicting_and_fails_closed_when_nothing_is_idle() {
        // A real pool of two instances, one held by a "call in flight".
        let engine = crate::Engine::new(crate::EngineConfig::default().pool_instances(2)).unwrap();
        // The empty component, in binary: it still takes a component-instance slot.
        let empty = b"\0asm\x0d\0\x01\0";
        let component = wasmtime::component::Component::new(engine.wasmtime(), empty).unwrap();
        let linker = wasmtime::component::Linker::<()>::new(engine.wasmtime());
        let make = || -> wasmtime::Result<wasmtime::Store<()>> {
            let mut store = wasmtime::Store::new(engine.wasmtime(), ());
            linker.instantiate(&mut store, &component)?;
            Ok(store)
        };
        let busy = make().unwrap();
        let idle = make().unwrap();
        let Err(exhausted) = make() else {
            panic!("the pool is full")
        };
        assert!(exhausted.is::<wasmtime::PoolConcurrencyLimitError>());

        let registry = WarmRegistry::new(2);
        struct Idle(Mutex<Option<wasmtime::Store<()>>>, WarmLink);
        impl IdleSet for Idle {
            fn link(&self) -> &WarmLink {
                &self.1
            }
            fn evict_oldest(&self) -> (Option<Evicted>, bool) {
                self.1.unlist();
                let store = self.0.lock().unwrap().take();
                (store.map(|store| Box::new(store) as Evicted), true)
            }
        }
        let set = Arc::new(Idle(Mutex::new(Some(idle)), WarmLink::new()));
        registry.adding();
        registry.returned(&set, false);
        // The idle instance is given back; the busy one is never touched.
        let third = registry.instantiate(make).expect("room made by evicting");
        assert_eq!(registry.evictions(), 1);
        // Now both slots are busy: nothing to give back, the pool's error.
        let Err(refused) = registry.instantiate(make) else {
            panic!("fails closed")
        };
        assert!(refused.is::<wasmtime::PoolConcurrencyLimitError>());
        drop((busy, third));
    }
}
