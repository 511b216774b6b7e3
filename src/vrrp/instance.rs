//! One VRRP group on one interface: the RFC 5798 / RFC 3768 state machine
//! (Initialize, Backup, Master) with its timers, as a pure object.
//!
//! The instance never touches a socket or a clock: every input comes with
//! `now`, and every effect comes back as an [`Action`] that the actor
//! (`vrrp::actor`) carries out. Its timers are deadlines that the actor
//! sleeps until ([`Instance::next_deadline`]). That keeps the protocol
//! testable with made-up instants and packets.
//!
//! A group can be *held* ([`Instance::set_hold`]): the hot backup holds
//! the group of a remote-backup-profile until this router's batch backup
//! from the current master is complete, so that a returning router with a
//! higher priority does not take over before it holds every lease the
//! other one granted. While held, a backup follows a lower-priority master
//! as it would follow a higher one (no preemption, `preempt_at` is never
//! set); it still becomes master when the master goes silent or resigns
//! (the master down timer is not preemption: a dead master is replaced
//! within the RFC bound whatever the hold), and a master stays master.
//! When the hold is lifted, the configured preempt delay counts from the
//! release if a lower-priority master is being followed then (a delay of
//! 0 preempts at once), else from the first lower-priority advertisement
//! heard afterwards, as without a hold: the delay always gives a quiet
//! time after the backup became complete, whatever the sync took.
//!
//! A group can also *track* an object that it needs to serve
//! ([`Instance::set_track`]): the lease store of the DHCP server that a
//! remote-backup-profile binds to the group. While the tracked object is
//! down the group runs at priority 1 (keepalived's `track_script`, a
//! carrier router's `vrrp vrid track`): a master resigns at once with a
//! priority 0 advertisement (RFC 5798 6.4.3, what RFC 9568 lets a master
//! that stops do), so that the peer takes over after its Skew_Time
//! whatever its preempt setting; a backup never preempts, and still
//! becomes master when no other router is (a master that cannot store is
//! better than none). When the object is back the configured priority
//! applies again: a master advertises it at once, a backup preempts the
//! lower-priority master it follows by the usual rules (preempt delay and
//! hold). An address owner keeps priority 255: its virtual address is its
//! own, no peer may take it.

use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::time::Instant;

use super::packet::{Advert, ChecksumForm, Received, Version};

/// RFC 5798 section 6.4 states (and the YANG `vrrp-state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Initialize,
    Backup,
    Master,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Initialize => "initialize",
            State::Backup => "backup",
            State::Master => "master",
        }
    }
}

/// Why a state changed (the YANG notification's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Startup,
    Shutdown,
    MasterDownTimer,
    HigherPriority,
    PriorityZero,
    Preempt,
    ConfigChange,
    /// A tracked object went down: a master resigned.
    TrackedDown,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Startup => "startup",
            Reason::Shutdown => "shutdown",
            Reason::MasterDownTimer => "master-down-timer",
            Reason::HigherPriority => "higher-priority-advertisement",
            Reason::PriorityZero => "priority-zero-received",
            Reason::Preempt => "preempt",
            Reason::ConfigChange => "config-change",
            Reason::TrackedDown => "tracked-object-down",
        }
    }
}

/// The configuration the state machine runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub vrid: u8,
    pub version: Version,
    /// Configured priority, 1..=254 (255 comes from address ownership).
    pub priority: u8,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub advert_interval: Duration,
    pub addresses: Vec<Ipv4Addr>,
    pub checksum: ChecksumForm,
}

/// What the actor must do on behalf of the instance, in this order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this advertisement (priority 0 when resigning).
    Send(Advert),
    /// Add these virtual addresses to the interface and announce them.
    Take(Vec<Ipv4Addr>),
    /// Remove these virtual addresses from the interface.
    Release(Vec<Ipv4Addr>),
    Changed {
        old: State,
        new: State,
        reason: Reason,
    },
}

/// Counters of the YANG `statistics` container of a group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub master_transitions: u64,
    pub ttl_errors: u64,
    pub checksum_errors: u64,
    pub version_errors: u64,
    pub interval_errors: u64,
    pub address_list_errors: u64,
    pub length_errors: u64,
    pub type_errors: u64,
    pub auth_errors: u64,
    pub priority_zero_sent: u64,
    pub priority_zero_received: u64,
    /// A tracked object went down (the priority dropped to 1).
    pub tracked_down: u64,
}

impl Stats {
    /// Dropped advertisements, all reasons (address-list mismatches are
    /// accepted, so not counted).
    pub fn bad_packets(&self) -> u64 {
        self.ttl_errors
            + self.checksum_errors
            + self.version_errors
            + self.interval_errors
            + self.length_errors
            + self.type_errors
            + self.auth_errors
    }
}

/// Why a received advertisement was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    Ttl(u8),
    Version,
    Interval(u32),
    Auth(u8),
    /// Our own advertisement, looped back.
    Own,
    /// Nothing to do with it in the current state (Initialize).
    NotRunning,
}

/// The priority a group runs with while a tracked object is down: the
/// lowest a working router may advertise, below any peer's.
pub const TRACKED_PRIORITY: u8 = 1;

/// A VRRP group's state machine.
#[derive(Debug)]
pub struct Instance {
    params: Params,
    state: State,
    /// This router owns a virtual address (it is one of the interface's own
    /// addresses): priority 255, and the address is never added or removed.
    owner: bool,
    /// Our primary address on the interface: the advertisements' source and
    /// the tie-breaker of equal priorities.
    primary: Ipv4Addr,
    /// Version 3: the master's interval, learned from its advertisements.
    master_adver_interval: Duration,
    master_down_at: Option<Instant>,
    adver_at: Option<Instant>,
    /// A lower-priority master was seen: preempt it at this instant.
    /// Never set while held.
    preempt_at: Option<Instant>,
    /// Preemption held, with the reason shown in the group's state.
    hold: Option<String>,
    /// A tracked object is down, with the reason shown in the group's
    /// state: the group runs at [`TRACKED_PRIORITY`].
    track: Option<String>,
    /// The last advertisement came from a lower-priority master that we
    /// would preempt: its source and when it was heard (backup only).
    lower_master: Option<(Ipv4Addr, Instant)>,
    /// Reason to report when the master down timer fires.
    down_reason: Reason,
    /// The master down timer fired late and was given Skew_Time for the
    /// advertisements queued meanwhile (once, until the next one heard).
    late_wait: bool,
    master_address: Option<Ipv4Addr>,
    pub stats: Stats,
}

impl Instance {
    pub fn new(params: Params) -> Instance {
        Instance {
            master_adver_interval: params.advert_interval,
            params,
            state: State::Initialize,
            owner: false,
            primary: Ipv4Addr::UNSPECIFIED,
            master_down_at: None,
            adver_at: None,
            preempt_at: None,
            hold: None,
            track: None,
            lower_master: None,
            down_reason: Reason::MasterDownTimer,
            late_wait: false,
            master_address: None,
            stats: Stats::default(),
        }
    }

    /// Why preemption is held, when it is.
    pub fn preempt_hold(&self) -> Option<&str> {
        self.hold.as_deref()
    }

    /// Hold preemption (`Some(reason)`) or lift the hold (`None`). Setting
    /// the same hold again, or a new reason for a held group, changes
    /// nothing but the reason. See the module header for the rules.
    pub fn set_hold(&mut self, now: Instant, hold: Option<String>) {
        let was_held = self.hold.is_some();
        self.hold = hold;
        let held = self.hold.is_some();
        if held && !was_held {
            self.preempt_at = None;
            if self.state == State::Backup && self.down_reason == Reason::Preempt {
                // Preempt delay 0: the master down timer was about to
                // preempt a live lower-priority master whose adverts were
                // discarded. Follow it instead, from its last one.
                if let Some((src, at)) = self.lower_master {
                    self.master_down_at = Some(at + self.master_down_interval());
                    self.master_address = Some(src);
                }
                self.down_reason = Reason::MasterDownTimer;
            }
        } else if was_held
            && !held
            && self.state == State::Backup
            && self.params.preempt
            && self.lower_master.is_some()
        {
            self.preempt_at = Some(now + self.params.preempt_delay);
        }
    }

    /// Why a tracked object is down, when it is.
    pub fn tracked_down(&self) -> Option<&str> {
        self.track.as_deref()
    }

    /// A tracked object went down (`Some(reason)`) or is back (`None`).
    /// Going down, a master resigns (priority 0, addresses released) and
    /// the group runs at [`TRACKED_PRIORITY`]; coming back, a master
    /// advertises its priority at once. A new reason for an object
    /// already down changes nothing but the reason. See the module header.
    pub fn set_track(&mut self, now: Instant, track: Option<String>) -> Vec<Action> {
        let mut out = Vec::new();
        let was_down = self.track.is_some();
        self.track = track;
        let down = self.track.is_some();
        if was_down == down {
            return out;
        }
        if down {
            self.stats.tracked_down += 1;
        }
        if self.owner {
            return out;
        }
        match (self.state, down) {
            (State::Initialize, _) => {}
            (State::Master, true) => {
                self.send(0, &mut out);
                self.become_backup(now, Reason::TrackedDown, &mut out);
                self.master_address = None;
            }
            (State::Backup, true) => {
                // Every master is above us now: no preemption pending, and
                // a lower master whose adverts were being discarded
                // (preempt delay 0) is followed from its last one.
                self.preempt_at = None;
                if self.down_reason == Reason::Preempt {
                    if let Some((src, at)) = self.lower_master {
                        self.master_down_at = Some(at + self.master_down_interval());
                        self.master_address = Some(src);
                    }
                    self.down_reason = Reason::MasterDownTimer;
                }
                self.lower_master = None;
            }
            (State::Master, false) => {
                // Tell the group at once rather than one interval later.
                self.send(self.priority(), &mut out);
                self.adver_at = Some(now + self.params.advert_interval);
            }
            // The next advertisement of a lower-priority master starts the
            // usual preemption (delay, hold).
            (State::Backup, false) => {}
        }
        out
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn primary(&self) -> Ipv4Addr {
        self.primary
    }

    pub fn is_owner(&self) -> bool {
        self.owner
    }

    /// The current master: us when master, else the source of the last
    /// accepted advertisement.
    pub fn master_address(&self) -> Option<Ipv4Addr> {
        match self.state {
            State::Master => Some(self.primary),
            State::Backup => self.master_address,
            State::Initialize => None,
        }
    }

    /// The priority we run with and advertise: 255 as address owner,
    /// [`TRACKED_PRIORITY`] while a tracked object is down, else the
    /// configured one.
    pub fn priority(&self) -> u8 {
        if self.owner {
            255
        } else if self.track.is_some() {
            TRACKED_PRIORITY
        } else {
            self.params.priority
        }
    }

    /// The interval the master uses, as far as we know (version 3 learns it).
    pub fn master_adver_interval(&self) -> Duration {
        self.master_adver_interval
    }

    /// Skew_Time: RFC 5798 section 6.1 (version 3, from the master's
    /// interval) and RFC 3768 section 6.1 (version 2, in seconds).
    pub fn skew_time(&self) -> Duration {
        let base = match self.params.version {
            Version::V3 => self.master_adver_interval,
            Version::V2 => Duration::from_secs(1),
        };
        base * (256 - u32::from(self.priority())) / 256
    }

    /// Master_Down_Interval = 3 × interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        self.master_adver_interval * 3 + self.skew_time()
    }

    /// The earliest instant at which [`Instance::on_timer`] has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.master_down_at, self.adver_at, self.preempt_at]
            .into_iter()
            .flatten()
            .min()
    }

    fn advert(&self, priority: u8) -> Advert {
        let interval = match self.params.version {
            Version::V3 => (self.params.advert_interval.as_millis() / 10).clamp(1, 4095) as u16,
            Version::V2 => self.params.advert_interval.as_secs().clamp(1, 255) as u16,
        };
        Advert {
            version: self.params.version,
            vrid: self.params.vrid,
            priority,
            interval,
            auth_type: 0,
            auth_data: [0; 8],
            addresses: self.params.addresses.clone(),
        }
    }

    fn send(&mut self, priority: u8, out: &mut Vec<Action>) {
        self.stats.adverts_sent += 1;
        if priority == 0 {
            self.stats.priority_zero_sent += 1;
        }
        out.push(Action::Send(self.advert(priority)));
    }

    fn change(&mut self, new: State, reason: Reason, out: &mut Vec<Action>) {
        let old = self.state;
        self.state = new;
        self.lower_master = None;
        if new == State::Master {
            self.stats.master_transitions += 1;
        }
        out.push(Action::Changed { old, new, reason });
    }

    /// The virtual addresses we add and remove (not the ones we own).
    fn managed(&self) -> Vec<Ipv4Addr> {
        if self.owner {
            Vec::new()
        } else {
            self.params.addresses.clone()
        }
    }

    fn become_master(&mut self, now: Instant, reason: Reason, out: &mut Vec<Action>) {
        self.late_wait = false;
        // RFC 5798 6.4.1/6.4.2: advertise first, then take the addresses
        // (the actor sends gratuitous ARPs with them).
        self.send(self.priority(), out);
        let managed = self.managed();
        if !managed.is_empty() {
            out.push(Action::Take(managed));
        }
        self.adver_at = Some(now + self.params.advert_interval);
        self.master_down_at = None;
        self.preempt_at = None;
        self.change(State::Master, reason, out);
    }

    fn become_backup(&mut self, now: Instant, reason: Reason, out: &mut Vec<Action>) {
        if self.state == State::Master {
            let managed = self.managed();
            if !managed.is_empty() {
                out.push(Action::Release(managed));
            }
        }
        self.adver_at = None;
        self.preempt_at = None;
        self.down_reason = Reason::MasterDownTimer;
        self.master_down_at = Some(now + self.master_down_interval());
        self.change(State::Backup, reason, out);
    }

    /// Accept `rx`'s sender as the working master: restart the master
    /// down timer (version 3 learns its interval first).
    fn follow(&mut self, now: Instant, rx: &Received) {
        if rx.advert.version == Version::V3 {
            self.master_adver_interval = Duration::from_millis(u64::from(rx.advert.interval_ms()));
        }
        self.master_down_at = Some(now + self.master_down_interval());
        self.down_reason = Reason::MasterDownTimer;
        self.late_wait = false;
        self.master_address = Some(rx.src);
    }

    /// Startup event: the interface is up with `primary` as its address.
    /// `owner`: one of the virtual addresses is the interface's own.
    pub fn startup(&mut self, now: Instant, primary: Ipv4Addr, owner: bool) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state != State::Initialize {
            return out;
        }
        self.primary = primary;
        self.owner = owner;
        self.master_adver_interval = self.params.advert_interval;
        self.master_address = None;
        if self.priority() == 255 {
            self.become_master(now, Reason::Startup, &mut out);
        } else {
            self.become_backup(now, Reason::Startup, &mut out);
        }
        out
    }

    /// Shutdown event (group deleted, daemon stopping, interface down): a
    /// master resigns with priority 0 and gives its addresses back.
    pub fn shutdown(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        match self.state {
            State::Initialize => return out,
            State::Master => {
                self.send(0, &mut out);
                let managed = self.managed();
                if !managed.is_empty() {
                    out.push(Action::Release(managed));
                }
            }
            State::Backup => {}
        }
        self.master_down_at = None;
        self.adver_at = None;
        self.preempt_at = None;
        self.change(State::Initialize, Reason::Shutdown, &mut out);
        out
    }

    /// Run the timers that are due at `now`.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match self.state {
            State::Initialize => {}
            State::Backup => {
                if self.preempt_at.is_some_and(|t| t <= now) {
                    self.become_master(now, Reason::Preempt, &mut out);
                } else if let Some(due) = self.master_down_at.filter(|t| *t <= now) {
                    if !self.late_wait && now.duration_since(due) > self.master_adver_interval {
                        // Fired a whole advertisement interval late: this
                        // process did not run (stopped, starved), and what
                        // the master sent meanwhile is still queued behind
                        // this timer. Wait Skew_Time for it (`follow`
                        // resets the timer) before taking the addresses of
                        // a live master.
                        self.late_wait = true;
                        self.master_down_at = Some(now + self.skew_time());
                    } else {
                        self.become_master(now, self.down_reason, &mut out);
                    }
                }
            }
            State::Master => {
                if let Some(at) = self.adver_at.filter(|t| *t <= now) {
                    self.send(self.priority(), &mut out);
                    // Keep the cadence of the schedule, not of the wake-ups,
                    // unless we fell behind by a whole interval.
                    let next = at + self.params.advert_interval;
                    self.adver_at = Some(if next > now {
                        next
                    } else {
                        now + self.params.advert_interval
                    });
                }
            }
        }
        out
    }

    /// A decoded advertisement for our VRID arrived on our interface.
    pub fn on_advert(&mut self, now: Instant, rx: &Received) -> Result<Vec<Action>, Drop> {
        let adv = &rx.advert;
        if self.state == State::Initialize {
            return Err(Drop::NotRunning);
        }
        if rx.src == self.primary {
            return Err(Drop::Own);
        }
        if rx.ttl != 255 {
            self.stats.ttl_errors += 1;
            return Err(Drop::Ttl(rx.ttl));
        }
        if adv.version != self.params.version {
            self.stats.version_errors += 1;
            return Err(Drop::Version);
        }
        if adv.version == Version::V2 {
            if adv.auth_type != 0 {
                self.stats.auth_errors += 1;
                return Err(Drop::Auth(adv.auth_type));
            }
            if Duration::from_millis(u64::from(adv.interval_ms())) != self.params.advert_interval {
                self.stats.interval_errors += 1;
                return Err(Drop::Interval(adv.interval_ms()));
            }
        }
        if !same_addresses(&adv.addresses, &self.params.addresses) {
            // RFC 5798 7.1: log (by the actor) and go on.
            self.stats.address_list_errors += 1;
        }
        self.stats.adverts_received += 1;
        if adv.priority == 0 {
            self.stats.priority_zero_received += 1;
        }
        let mut out = Vec::new();
        let ours = self.priority();
        match self.state {
            State::Initialize => {}
            State::Backup => {
                if adv.priority == 0 {
                    // RFC 5798 6.4.2: the master resigned; take over after
                    // Skew_Time unless a higher-priority backup speaks first.
                    self.master_down_at = Some(now + self.skew_time());
                    self.down_reason = Reason::PriorityZero;
                    self.master_address = None;
                    self.lower_master = None;
                } else if !self.params.preempt || adv.priority >= ours {
                    self.follow(now, rx);
                    self.lower_master = None;
                    self.preempt_at = None;
                } else if self.hold.is_some() {
                    // Held: the lower-priority master is a working master.
                    self.lower_master = Some((rx.src, now));
                    self.follow(now, rx);
                } else if self.params.preempt_delay.is_zero() {
                    // RFC 5798 6.4.2: discard it; the master down timer will
                    // make us master.
                    self.lower_master = Some((rx.src, now));
                    self.down_reason = Reason::Preempt;
                } else {
                    // Preempt after the configured delay; meanwhile the
                    // lower-priority master is a working master.
                    self.lower_master = Some((rx.src, now));
                    self.follow(now, rx);
                    if self.preempt_at.is_none() {
                        self.preempt_at = Some(now + self.params.preempt_delay);
                    }
                }
            }
            State::Master => {
                if adv.priority == 0 {
                    // Another router resigned: make sure the group hears us.
                    self.send(ours, &mut out);
                    self.adver_at = Some(now + self.params.advert_interval);
                } else if adv.priority > ours
                    || (adv.priority == ours && u32::from(rx.src) > u32::from(self.primary))
                {
                    if adv.version == Version::V3 {
                        self.master_adver_interval =
                            Duration::from_millis(u64::from(adv.interval_ms()));
                    }
                    self.become_backup(now, Reason::HigherPriority, &mut out);
                    self.master_address = Some(rx.src);
                } else {
                    // Discard it (RFC 5798 6.4.3): our next advertisement
                    // makes the other master step down. But it may have
                    // announced the addresses (a backup waking from a
                    // freeze, a partition healing): without a virtual MAC
                    // the hosts' ARP entries then point at it until they
                    // expire. Announce them again (gratuitous ARP).
                    let managed = self.managed();
                    if !managed.is_empty() {
                        out.push(Action::Take(managed));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Apply a new configuration without restarting the group: a master
    /// stays master, a backup keeps its master. Returns what to do now.
    pub fn update(&mut self, now: Instant, params: Params) -> Vec<Action> {
        let mut out = Vec::new();
        let old = std::mem::replace(&mut self.params, params);
        if self.state == State::Initialize {
            return out;
        }
        if self.state == State::Master && !self.owner {
            let removed: Vec<Ipv4Addr> = old
                .addresses
                .iter()
                .filter(|a| !self.params.addresses.contains(a))
                .copied()
                .collect();
            let added: Vec<Ipv4Addr> = self
                .params
                .addresses
                .iter()
                .filter(|a| !old.addresses.contains(a))
                .copied()
                .collect();
            if !removed.is_empty() {
                out.push(Action::Release(removed));
            }
            if !added.is_empty() {
                out.push(Action::Take(added));
            }
        }
        if !self.params.preempt {
            self.preempt_at = None;
            if self.down_reason == Reason::Preempt {
                self.down_reason = Reason::MasterDownTimer;
            }
        }
        match self.state {
            State::Master => {
                if old.priority != self.params.priority
                    || old.advert_interval != self.params.advert_interval
                    || old.addresses != self.params.addresses
                {
                    // Tell the group at once rather than one interval later.
                    self.send(self.priority(), &mut out);
                    self.adver_at = Some(now + self.params.advert_interval);
                }
            }
            State::Backup => {
                if self.params.version == Version::V2 || old.version != self.params.version {
                    self.master_adver_interval = self.params.advert_interval;
                }
            }
            State::Initialize => {}
        }
        out
    }
}

fn same_addresses(a: &[Ipv4Addr], b: &[Ipv4Addr]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
    const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);

    fn params(prio: u8, version: Version, interval_ms: u64) -> Params {
        Params {
            vrid: 1,
            version,
            priority: prio,
            preempt: true,
            preempt_delay: Duration::ZERO,
            advert_interval: Duration::from_millis(interval_ms),
            addresses: vec![VIP],
            checksum: ChecksumForm::PseudoHeader,
        }
    }

    fn rx(src: Ipv4Addr, prio: u8, version: Version, interval: u16) -> Received {
        Received {
            src,
            dst: super::super::packet::VRRP_GROUP,
            ttl: 255,
            checksum: ChecksumForm::PseudoHeader,
            advert: Advert {
                version,
                vrid: 1,
                priority: prio,
                interval,
                auth_type: 0,
                auth_data: [0; 8],
                addresses: vec![VIP],
            },
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn changed(actions: &[Action]) -> Option<(State, Reason)> {
        actions.iter().find_map(|a| match a {
            Action::Changed { new, reason, .. } => Some((*new, *reason)),
            _ => None,
        })
    }

    fn sent_priority(actions: &[Action]) -> Option<u8> {
        actions.iter().find_map(|a| match a {
            Action::Send(adv) => Some(adv.priority),
            _ => None,
        })
    }

    /// Drive the timers from `from` in 1 ms steps up to `until`; return the
    /// instant of the first state change and its actions.
    fn run_until(
        i: &mut Instance,
        from: Instant,
        until: Duration,
    ) -> Option<(Duration, Vec<Action>)> {
        let mut t = from;
        while t <= from + until {
            let a = i.on_timer(t);
            if changed(&a).is_some() {
                return Some((t - from, a));
            }
            t += ms(1);
        }
        None
    }

    /// A master that hears a lower-priority router advertise as master
    /// (which may have announced the virtual addresses) announces them
    /// again; it stays master. The fault campaign's master, frozen while
    /// the backup took over, got no request for 3.4 s after it woke: the
    /// relay's ARP entry still named the backup.
    #[test]
    fn a_master_reannounces_its_addresses_to_a_lower_master() {
        let t0 = Instant::now();
        let mut i = Instance::new(params(120, Version::V3, 1000));
        i.startup(t0, ME, false);
        run_until(&mut i, t0, ms(5000)).expect("master");
        let a = i
            .on_advert(t0 + ms(6000), &rx(PEER, 100, Version::V3, 100))
            .unwrap();
        assert_eq!(changed(&a), None);
        assert_eq!(a, vec![Action::Take(vec![VIP])]);
        assert_eq!(i.state(), State::Master);
    }

    /// A backup whose process did not run for longer than the master down
    /// interval (SIGSTOP, a starved VM) sees its timer fire late, with the
    /// master's advertisements of meanwhile still queued behind it: it
    /// waits Skew_Time for them instead of taking the address from a live
    /// master (the fault campaign's stalled backup did, announced the
    /// virtual address for a moment, and the clients' ARP entries then
    /// pointed at it for 8 s). With no advertisement in that time it takes
    /// over.
    #[test]
    fn a_timer_fired_late_waits_for_queued_advertisements() {
        let t0 = Instant::now();
        let mut i = Instance::new(params(100, Version::V3, 1000));
        i.startup(t0, ME, false);
        i.on_advert(t0, &rx(PEER, 120, Version::V3, 100)).unwrap();
        // frozen for 8 s: the first timer run is long after the deadline
        let woke = t0 + ms(8000);
        let a = i.on_timer(woke);
        assert_eq!(changed(&a), None, "took over from a live master: {a:?}");
        assert_eq!(i.next_deadline(), Some(woke + i.skew_time()));
        // the queued advertisement is read: the master is alive
        let a = i
            .on_advert(woke + ms(2), &rx(PEER, 120, Version::V3, 100))
            .unwrap();
        assert_eq!(changed(&a), None);
        assert_eq!(run_until(&mut i, woke + ms(3), ms(3000)), None);

        // no advertisement queued: master after Skew_Time
        let mut i = Instance::new(params(100, Version::V3, 1000));
        i.startup(t0, ME, false);
        i.on_advert(t0, &rx(PEER, 120, Version::V3, 100)).unwrap();
        assert_eq!(changed(&i.on_timer(woke)), None);
        let (at, a) = run_until(&mut i, woke, ms(2000)).unwrap();
        assert_eq!(at, ms(610), "Skew_Time 609.375 ms, rounded up to the ms");
        assert_eq!(changed(&a), Some((State::Master, Reason::MasterDownTimer)));
        // on time (a master that really stopped): no wait
        let mut i = Instance::new(params(100, Version::V3, 1000));
        i.startup(t0, ME, false);
        i.on_advert(t0, &rx(PEER, 120, Version::V3, 100)).unwrap();
        let (at, _) = run_until(&mut i, t0, ms(5000)).unwrap();
        assert_eq!(at, ms(3610));
    }

    #[test]
    fn rfc_timers_v3_and_v2() {
        let i = Instance::new(params(100, Version::V3, 1000));
        assert_eq!(i.skew_time(), Duration::from_micros(609_375));
        assert_eq!(i.master_down_interval(), Duration::from_micros(3_609_375));
        let i = Instance::new(params(200, Version::V3, 10));
        assert_eq!(i.master_down_interval(), Duration::from_nanos(32_187_500));
        let i = Instance::new(params(100, Version::V2, 3000));
        assert_eq!(i.master_down_interval(), Duration::from_micros(9_609_375));
    }

    #[test]
    fn backup_becomes_master_after_master_down_interval() {
        let t0 = Instant::now();
        let mut i = Instance::new(params(100, Version::V3, 100));
        let a = i.startup(t0, ME, false);
        assert_eq!(changed(&a), Some((State::Backup, Reason::Startup)));
        assert!(sent_priority(&a).is_none());
        let (at, a) = run_until(&mut i, t0, ms(1000)).unwrap();
        assert_eq!(
            at,
            ms(361),
            "3 × 100 ms + 156/256 × 100 ms, rounded up to the ms"
        );
        assert_eq!(changed(&a), Some((State::Master, Reason::MasterDownTimer)));
        assert_eq!(sent_priority(&a), Some(100));
        assert!(a.contains(&Action::Take(vec![VIP])));
        assert_eq!(i.master_address(), Some(ME));
        assert_eq!(i.stats.master_transitions, 1);
    }

    #[test]
    fn master_advertises_every_interval_without_drift() {
        let t0 = Instant::now();
        let mut i = Instance::new(params(254, Version::V3, 10));
        i.startup(t0, ME, true); // owner: master at once, priority 255
        assert_eq!(i.state(), State::Master);
        assert_eq!(i.priority(), 255);
        let mut sends = Vec::new();
        let mut t = t0;
        while t < t0 + ms(1000) {
            // wake up late by 3 ms every time: the schedule must not slip
            t += ms(1);
            if i.next_deadline().is_some_and(|d| d + ms(3) <= t)
                && sent_priority(&i.on_timer(t)).is_some()
            {
                sends.push(t - t0);
            }
        }
        assert_eq!(sends.len(), 99, "{sends:?}");
        assert_eq!(sends[98], ms(993));
    }

    #[test]
    fn owner_takes_nothing_and_releases_nothing() {
        let t0 = Instant::now();
        let mut i = Instance::new(params(100, Version::V3, 100));
        let a = i.startup(t0, VIP, true);
        assert_eq!(changed(&a), Some((State::Master, Reason::Startup)));
        assert_eq!(sent_priority(&a), Some(255));
        assert!(!a.iter().any(|x| matches!(x, Action::Take(_))));
        let a = i.shutdown();
        assert_eq!(sent_priority(&a), Some(0));
        assert!(!a.iter().any(|x| matches!(x, Action::Release(_))));
    }

    #[test]
    fn adverts_from_a_higher_master_keep_a_backup_down_and_v3_learns_the_interval() {
        let t0 = Instant::now();
        let mut i = Instance::new(params(100, Version::V3, 1000));
        i.startup(t0, ME, false);
        let mut t = t0;
        for _ in 0..50 {
            t += ms(50);
            assert!(i.on_timer(t).is_empty());
            i.on_advert(t, &rx(PEER, 150, Version::V3, 5)).unwrap();
        }
        assert_eq!(i.master_adver_interval(), ms(50));
        assert_eq!(i.master_address(), Some(PEER));
        assert_eq!(i.stats.adverts_received, 50);
        // silence: master down after 3 × 50 ms + skew(50 ms)
        let (at, a) = run_until(&mut i, t, ms(1000)).unwrap();
        assert_eq!(at, ms(181));
        assert_eq!(changed(&a), Some((State::Master, Reason::MasterDownTimer)));
    }

    #[test]
    fn priority_zero_makes_the_backup_take_over_after_skew_time() {
        let t0 = Instant::now();
        let mut i = Instance::new(params(100, Version::V3, 100));
        i.startup(t0, ME, false);
        i.on_advert(t0 + ms(10), &rx(PEER, 200, Version::V3, 10))
            .unwrap();
        i.on_advert(t0 + ms(20), &rx(PEER, 0, Version::V3, 10))
            .unwrap();
        assert_eq!(i.stats.priority_zero_received, 1);
        let (at, a) = run_until(&mut i, t0 + ms(20), ms(1000)).unwrap();
        assert_eq!(at, ms(61), "skew = 156/256 × 100 ms");
        assert_eq!(changed(&a), Some((State::Master, Reason::PriorityZero)));
    }

    #[test]
    fn master_steps_down_for_a_higher_priority_and_for_a_higher_address_at_equal_priority() {
        for (prio, src, steps_down) in [
            (150, PEER, true),
            (100, PEER, true),                        // equal, 10.0.0.3 > 10.0.0.2
            (100, Ipv4Addr::new(10, 0, 0, 1), false), // equal, lower address
            (50, PEER, false),
        ] {
            let t0 = Instant::now();
            let mut i2 = Instance::new(params(100, Version::V3, 100));
            i2.startup(t0, ME, false);
            run_until(&mut i2, t0, ms(1000)).unwrap();
            assert_eq!(i2.state(), State::Master);
            let a = i2
                .on_advert(t0 + ms(500), &rx(src, prio, Version::V3, 10))
                .unwrap();
            if steps_down {
                assert_eq!(changed(&a), Some((State::Backup, Reason::HigherPriority)));
                assert!(a.contains(&Action::Release(vec![VIP])));
                assert_eq!(i2.master_address(), Some(src));
            } else {
                // stays master, announces its addresses again
                assert_eq!(a, vec![Action::Take(vec![VIP])]);
                assert_eq!(i2.state(), State::Master);
            }
        }
    }

    #[test]
    fn preempt_without_delay_takes_over_at_master_down() {
        let t0 = Instant::now();
        let mut i = Instance::new(params(200, Version::V3, 100));
        i.startup(t0, ME, false);
        let mut t = t0;
        for _ in 0..3 {
            t += ms(100);
            i.on_advert(t, &rx(PEER, 100, Version::V3, 10)).unwrap();
        }
        // the lower-priority adverts are discarded: master down counts from startup
        let (at, a) = run_until(&mut i, t0, ms(1000)).unwrap();
        assert_eq!(at, ms(322), "3 × 100 ms + 56/256 × 100 ms");
        assert_eq!(changed(&a), Some((State::Master, Reason::Preempt)));
    }

    #[test]
    fn preempt_delay_waits_then_takes_over() {
        let t0 = Instant::now();
        let mut p = params(200, Version::V3, 100);
        p.preempt_delay = Duration::from_secs(2);
        let mut i = Instance::new(p);
        i.startup(t0, ME, false);
        let mut t = t0;
        let mut became = None;
        while t < t0 + Duration::from_secs(5) {
            t += ms(10);
            if (t - t0).as_millis().is_multiple_of(100) {
                i.on_advert(t, &rx(PEER, 100, Version::V3, 10)).unwrap();
            }
            let a = i.on_timer(t);
            if let Some(c) = changed(&a) {
                became = Some((t - t0, c));
                break;
            }
        }
        // first lower advert at 100 ms, delay 2 s
        assert_eq!(became, Some((ms(2100), (State::Master, Reason::Preempt))));
    }

    #[test]
    fn no_preempt_keeps_a_lower_master() {
        let t0 = Instant::now();
        let mut p = params(200, Version::V3, 100);
        p.preempt = false;
        let mut i = Instance::new(p);
        i.startup(t0, ME, false);
        let mut t = t0;
        for _ in 0..100 {
            t += ms(100);
            i.on_advert(t, &rx(PEER, 100, Version::V3, 10)).unwrap();
            assert!(i.on_timer(t).is_empty());
        }
        assert_eq!(i.state(), State::Backup);
    }

    #[test]
    fn bad_adverts_are_counted_and_dropped() {
        let t0 = Instant::now();
        let mut i = Instance::new(params(100, Version::V2, 1000));
        i.startup(t0, ME, false);
        let mut low_ttl = rx(PEER, 200, Version::V2, 1);
        low_ttl.ttl = 64;
        assert_eq!(i.on_advert(t0, &low_ttl), Err(Drop::Ttl(64)));
        assert_eq!(
            i.on_advert(t0, &rx(PEER, 200, Version::V2, 2)),
            Err(Drop::Interval(2000))
        );
        assert_eq!(
            i.on_advert(t0, &rx(PEER, 200, Version::V3, 100)),
            Err(Drop::Version)
        );
        let mut auth = rx(PEER, 200, Version::V2, 1);
        auth.advert.auth_type = 1;
        assert_eq!(i.on_advert(t0, &auth), Err(Drop::Auth(1)));
        assert_eq!(
            i.on_advert(t0, &rx(ME, 200, Version::V2, 1)),
            Err(Drop::Own)
        );
        let mut other = rx(PEER, 200, Version::V2, 1);
        other.advert.addresses = vec![Ipv4Addr::new(1, 1, 1, 1)];
        assert!(i.on_advert(t0, &other).is_ok());
        let s = &i.stats;
        assert_eq!(
            (
                s.ttl_errors,
                s.interval_errors,
                s.version_errors,
                s.auth_errors,
                s.address_list_errors
            ),
            (1, 1, 1, 1, 1)
        );
        assert_eq!(s.bad_packets(), 4);
        assert_eq!(s.adverts_received, 1);
    }

    #[test]
    fn priority_change_keeps_mastership_and_advertises_at_once() {
        let t0 = Instant::now();
        let mut i = Instance::new(params(100, Version::V3, 100));
        i.startup(t0, ME, false);
        run_until(&mut i, t0, ms(1000)).unwrap();
        let mut p = i.params().clone();
        p.priority = 50;
        p.advert_interval = ms(200);
        let a = i.update(t0 + ms(500), p);
        assert_eq!(i.state(), State::Master);
        assert_eq!(sent_priority(&a), Some(50));
        assert!(changed(&a).is_none());
        assert_eq!(i.next_deadline(), Some(t0 + ms(700)));
        // a VIP change moves only that address
        let mut p = i.params().clone();
        p.addresses = vec![VIP, Ipv4Addr::new(10, 0, 0, 101)];
        let a = i.update(t0 + ms(600), p);
        assert!(a.contains(&Action::Take(vec![Ipv4Addr::new(10, 0, 0, 101)])));
        assert!(!a.iter().any(|x| matches!(x, Action::Release(_))));
    }

    #[test]
    fn shutdown_of_a_master_sends_priority_zero_and_releases() {
        let t0 = Instant::now();
        let mut i = Instance::new(params(100, Version::V3, 100));
        i.startup(t0, ME, false);
        run_until(&mut i, t0, ms(1000)).unwrap();
        let a = i.shutdown();
        assert_eq!(sent_priority(&a), Some(0));
        assert!(a.contains(&Action::Release(vec![VIP])));
        assert_eq!(changed(&a), Some((State::Initialize, Reason::Shutdown)));
        assert_eq!(i.stats.priority_zero_sent, 1);
        assert_eq!(i.next_deadline(), None);
        assert!(i.shutdown().is_empty());
    }
    /// Step the clock 1 ms at a time from `from` for `dur`: `PEER`
    /// advertises with `prio` every `every` (from `from + every`, while
    /// `adverts_until` has not passed), the timers run. Returns the first
    /// state change: when (from `from`), the new state and the reason.
    fn drive(
        i: &mut Instance,
        from: Instant,
        dur: Duration,
        prio: u8,
        every: Duration,
        adverts_until: Duration,
    ) -> Option<(Duration, State, Reason)> {
        let mut t = from;
        while t < from + dur {
            t += ms(1);
            let since = t - from;
            if since <= adverts_until && since.as_millis().is_multiple_of(every.as_millis()) {
                let a = i.on_advert(t, &rx(PEER, prio, Version::V3, 10)).unwrap();
                if let Some((s, r)) = changed(&a) {
                    return Some((since, s, r));
                }
            }
            if let Some((s, r)) = changed(&i.on_timer(t)) {
                return Some((since, s, r));
            }
        }
        None
    }

    const HOLD: &str = "waiting for the batch backup from the peer";

    fn held(prio: u8, delay: Duration, t0: Instant) -> Instance {
        let mut p = params(prio, Version::V3, 100);
        p.preempt_delay = delay;
        let mut i = Instance::new(p);
        i.set_hold(t0, Some(HOLD.into()));
        i.startup(t0, ME, false);
        i
    }

    #[test]
    fn a_held_backup_follows_a_lower_master_then_replaces_it_when_it_dies() {
        for delay in [Duration::ZERO, Duration::from_secs(2)] {
            let t0 = Instant::now();
            let mut i = held(200, delay, t0);
            assert_eq!(i.preempt_hold(), Some(HOLD));
            // 10 s of a lower-priority master, then silence from 10 s on
            let c = drive(
                &mut i,
                t0,
                Duration::from_secs(20),
                100,
                ms(100),
                ms(10_000),
            );
            // Master_Down_Interval of a 100 ms master at priority 200:
            // 300 + 56/256 × 100 = 321.9 ms after its last advert
            assert_eq!(
                c,
                Some((ms(10_322), State::Master, Reason::MasterDownTimer)),
                "delay {delay:?}"
            );
            assert_eq!(i.stats.master_transitions, 1);
            assert_eq!(i.preempt_hold(), Some(HOLD), "the hold stays until lifted");
        }
    }

    #[test]
    fn a_held_backup_follows_the_lower_master_it_heard() {
        let t0 = Instant::now();
        let mut i = held(200, Duration::ZERO, t0);
        assert!(drive(&mut i, t0, ms(1000), 100, ms(100), ms(1000)).is_none());
        assert_eq!(i.state(), State::Backup);
        assert_eq!(i.master_address(), Some(PEER));
        assert_eq!(i.master_adver_interval(), ms(100));
        // a resigning master is replaced after Skew_Time, held or not
        i.on_advert(t0 + ms(1050), &rx(PEER, 0, Version::V3, 10))
            .unwrap();
        let (at, a) = run_until(&mut i, t0 + ms(1050), ms(1000)).unwrap();
        assert_eq!(at, ms(22), "skew = 56/256 × 100 ms");
        assert_eq!(changed(&a), Some((State::Master, Reason::PriorityZero)));
    }

    #[test]
    fn release_preempts_after_the_delay_counted_from_the_release() {
        for (delay, want) in [(0, 5_000), (2_000, 7_000)] {
            let t0 = Instant::now();
            let mut i = held(200, ms(delay), t0);
            assert!(drive(&mut i, t0, ms(5_000), 100, ms(100), ms(60_000)).is_none());
            i.set_hold(t0 + ms(5_000), None);
            assert_eq!(i.preempt_hold(), None);
            let c = drive(&mut i, t0 + ms(4_999), ms(60_000), 100, ms(100), ms(60_000));
            assert_eq!(
                c.map(|(at, s, r)| (at + ms(4_999), s, r)),
                Some((ms(want), State::Master, Reason::Preempt)),
                "delay {delay} ms"
            );
        }
    }

    #[test]
    fn release_without_a_lower_master_leaves_the_normal_rules() {
        // a higher-priority master: the release changes nothing
        let t0 = Instant::now();
        let mut i = held(100, ms(2_000), t0);
        assert!(drive(&mut i, t0, ms(1_000), 200, ms(100), ms(60_000)).is_none());
        i.set_hold(t0 + ms(1_000), None);
        assert!(drive(&mut i, t0 + ms(1_000), ms(5_000), 200, ms(100), ms(60_000)).is_none());
        assert_eq!(i.master_address(), Some(PEER));
        // released before any master spoke: the delay runs from the first
        // lower-priority advert, as without a hold
        let t0 = Instant::now();
        let mut i = held(200, ms(2_000), t0);
        i.set_hold(t0 + ms(50), None);
        let c = drive(&mut i, t0, ms(5_000), 100, ms(100), ms(60_000));
        assert_eq!(c, Some((ms(2_100), State::Master, Reason::Preempt)));
    }

    #[test]
    fn a_hold_set_while_a_preemption_is_pending_cancels_it() {
        // delay 2 s: the preemption scheduled at 2.1 s does not happen
        let t0 = Instant::now();
        let mut p = params(200, Version::V3, 100);
        p.preempt_delay = ms(2_000);
        let mut i = Instance::new(p);
        i.startup(t0, ME, false);
        assert!(drive(&mut i, t0, ms(1_000), 100, ms(100), ms(60_000)).is_none());
        i.set_hold(t0 + ms(1_000), Some(HOLD.into()));
        assert!(drive(&mut i, t0 + ms(1_000), ms(10_000), 100, ms(100), ms(60_000)).is_none());
        assert_eq!(
            i.next_deadline(),
            Some(t0 + ms(11_000) + i.master_down_interval())
        );
        // delay 0: the master down timer was counting down on a live
        // lower master (its adverts discarded); held, it follows it
        let t0 = Instant::now();
        let mut i = Instance::new(params(200, Version::V3, 100));
        i.startup(t0, ME, false);
        assert!(drive(&mut i, t0, ms(250), 100, ms(100), ms(60_000)).is_none());
        i.set_hold(t0 + ms(250), Some(HOLD.into()));
        assert_eq!(i.master_address(), Some(PEER));
        assert_eq!(
            i.next_deadline(),
            Some(t0 + ms(200) + i.master_down_interval()),
            "master down from the last advert heard"
        );
        assert!(drive(&mut i, t0 + ms(250), ms(10_000), 100, ms(100), ms(60_000)).is_none());
        assert_eq!(i.state(), State::Backup);
    }

    #[test]
    fn a_held_master_stays_master() {
        let t0 = Instant::now();
        let mut i = Instance::new(params(200, Version::V3, 100));
        i.startup(t0, ME, false);
        run_until(&mut i, t0, ms(1000)).unwrap();
        assert_eq!(i.state(), State::Master);
        i.set_hold(t0 + ms(400), Some(HOLD.into()));
        assert!(drive(&mut i, t0 + ms(400), ms(5_000), 100, ms(100), ms(60_000)).is_none());
        assert_eq!(i.state(), State::Master);
        assert!(i.stats.adverts_sent > 40);
    }

    #[test]
    fn without_preempt_a_release_preempts_nothing() {
        let t0 = Instant::now();
        let mut p = params(200, Version::V3, 100);
        p.preempt = false;
        let mut i = Instance::new(p);
        i.set_hold(t0, Some(HOLD.into()));
        i.startup(t0, ME, false);
        assert!(drive(&mut i, t0, ms(1_000), 100, ms(100), ms(60_000)).is_none());
        i.set_hold(t0 + ms(1_000), None);
        assert!(drive(&mut i, t0 + ms(1_000), ms(5_000), 100, ms(100), ms(60_000)).is_none());
        assert_eq!(i.state(), State::Backup);
    }

    const STORE: &str =
        "lease store /var/lib/hotlease/leases.log: No space left on device (os error 28)";

    fn master(prio: u8, delay: Duration, t0: Instant) -> Instance {
        let mut p = params(prio, Version::V3, 100);
        p.preempt_delay = delay;
        let mut i = Instance::new(p);
        i.startup(t0, ME, false);
        run_until(&mut i, t0, ms(1000)).expect("master");
        assert_eq!(i.state(), State::Master);
        i
    }

    /// Issue 15: a master whose lease store cannot write kept the group,
    /// and the pair served nobody although the backup could. Tracked down,
    /// it resigns at once (priority 0, addresses released), runs at
    /// priority 1 and follows the lower-priority peer without preempting
    /// it; back up, it preempts by the usual rules (delay 0: at the
    /// master down timer of the last advertisement followed, set at
    /// priority 1: 300 + 255/256 × 100 ms; 2 s: 2 s after the first
    /// lower advertisement).
    #[test]
    fn a_master_whose_tracked_store_fails_resigns_and_takes_the_group_back_when_it_works() {
        for (delay, back) in [(0, 400), (2_000, 100 + 2_000)] {
            let t0 = Instant::now();
            let mut i = master(200, ms(delay), t0);
            let t1 = t0 + ms(1000);
            let a = i.set_track(t1, Some(STORE.into()));
            assert_eq!(
                a,
                vec![
                    Action::Send(i.advert(0)),
                    Action::Release(vec![VIP]),
                    Action::Changed {
                        old: State::Master,
                        new: State::Backup,
                        reason: Reason::TrackedDown
                    }
                ]
            );
            assert_eq!(i.priority(), TRACKED_PRIORITY);
            assert_eq!(i.tracked_down(), Some(STORE));
            assert_eq!(i.master_address(), None);
            assert_eq!((i.stats.tracked_down, i.stats.priority_zero_sent), (1, 1));
            // the peer (100) takes over and advertises: followed, never
            // preempted, for as long as the store fails
            let c = drive(&mut i, t1, ms(10_000), 100, ms(100), ms(60_000));
            assert_eq!(c, None, "delay {delay}");
            assert_eq!(i.master_address(), Some(PEER));
            // a new reason changes nothing else
            assert!(i
                .set_track(t1 + ms(10_000), Some("other".into()))
                .is_empty());
            assert_eq!(i.stats.tracked_down, 1);
            // the store works again
            assert!(i.set_track(t1 + ms(10_000), None).is_empty());
            assert_eq!(i.priority(), 200);
            let c = drive(
                &mut i,
                t1 + ms(10_000),
                ms(10_000),
                100,
                ms(100),
                ms(60_000),
            );
            assert_eq!(
                c,
                Some((ms(back), State::Master, Reason::Preempt)),
                "delay {delay}"
            );
        }
    }

    /// Without preempt on the peer's side the resignation still hands it
    /// the group (priority 0 is not preemption), after its Skew_Time.
    #[test]
    fn the_peer_takes_over_from_a_tracked_master_after_skew_time() {
        let t0 = Instant::now();
        let mut peer = Instance::new(params(100, Version::V3, 100));
        peer.params.preempt = false;
        peer.startup(t0, PEER, false);
        peer.on_advert(t0 + ms(10), &rx(ME, 200, Version::V3, 10))
            .unwrap();
        let mut i = master(200, Duration::ZERO, t0);
        let a = i.set_track(t0 + ms(20), Some(STORE.into()));
        let Some(Action::Send(adv)) = a.first() else {
            panic!("{a:?}")
        };
        let mut resign = rx(ME, adv.priority, Version::V3, adv.interval);
        resign.advert = adv.clone();
        peer.on_advert(t0 + ms(20), &resign).unwrap();
        let (at, a) = run_until(&mut peer, t0 + ms(20), ms(1000)).unwrap();
        assert_eq!(at, ms(61), "skew = 156/256 × 100 ms");
        assert_eq!(changed(&a), Some((State::Master, Reason::PriorityZero)));
    }

    #[test]
    fn a_tracked_backup_does_not_preempt_and_replaces_a_silent_master_at_priority_one() {
        // delay 2 s: the preemption pending at 2.1 s is cancelled
        let t0 = Instant::now();
        let mut p = params(200, Version::V3, 100);
        p.preempt_delay = ms(2_000);
        let mut i = Instance::new(p);
        i.startup(t0, ME, false);
        assert!(drive(&mut i, t0, ms(1_000), 100, ms(100), ms(60_000)).is_none());
        assert!(i.set_track(t0 + ms(1_000), Some(STORE.into())).is_empty());
        assert!(drive(&mut i, t0 + ms(1_000), ms(5_000), 100, ms(100), ms(60_000)).is_none());
        // delay 0: the master down timer counting down on a live lower
        // master (its adverts discarded) follows it instead
        let t0 = Instant::now();
        let mut i = Instance::new(params(200, Version::V3, 100));
        i.startup(t0, ME, false);
        assert!(drive(&mut i, t0, ms(250), 100, ms(100), ms(60_000)).is_none());
        i.set_track(t0 + ms(250), Some(STORE.into()));
        assert_eq!(i.master_address(), Some(PEER));
        assert!(drive(&mut i, t0 + ms(250), ms(5_000), 100, ms(100), ms(5_000)).is_none());
        // the master goes silent: master at priority 1, after
        // 3 × 100 ms + 255/256 × 100 ms
        let c = drive(
            &mut i,
            t0 + ms(5_250),
            ms(5_000),
            100,
            ms(100),
            Duration::ZERO,
        );
        assert_eq!(c, Some((ms(400), State::Master, Reason::MasterDownTimer)));
        let a = i.on_timer(t0 + ms(5_750));
        assert_eq!(sent_priority(&a), Some(TRACKED_PRIORITY));
        // back: the configured priority is advertised at once
        let a = i.set_track(t0 + ms(5_760), None);
        assert_eq!(sent_priority(&a), Some(200));
        assert_eq!(i.next_deadline(), Some(t0 + ms(5_860)));
        assert_eq!(i.stats.tracked_down, 1);
    }

    #[test]
    fn a_store_back_while_the_group_is_held_preempts_only_after_the_release() {
        let t0 = Instant::now();
        let mut i = master(200, Duration::ZERO, t0);
        i.set_track(t0 + ms(1_000), Some(STORE.into()));
        i.set_hold(t0 + ms(1_000), Some(HOLD.into()));
        assert!(drive(&mut i, t0 + ms(1_000), ms(2_000), 100, ms(100), ms(60_000)).is_none());
        i.set_track(t0 + ms(3_000), None);
        assert!(drive(&mut i, t0 + ms(3_000), ms(5_000), 100, ms(100), ms(60_000)).is_none());
        assert_eq!(i.state(), State::Backup);
        i.set_hold(t0 + ms(8_000), None);
        let c = drive(&mut i, t0 + ms(8_000), ms(5_000), 100, ms(100), ms(60_000));
        assert_eq!(c, Some((ms(1), State::Master, Reason::Preempt)));
    }

    #[test]
    fn an_address_owner_keeps_priority_255_when_tracked() {
        let t0 = Instant::now();
        let mut i = Instance::new(params(100, Version::V3, 100));
        i.startup(t0, VIP, true);
        assert!(i.set_track(t0, Some(STORE.into())).is_empty());
        assert_eq!((i.state(), i.priority()), (State::Master, 255));
        assert_eq!(i.tracked_down(), Some(STORE));
    }
}
