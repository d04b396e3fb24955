//! The VRRPv3 state machine of one virtual router (RFC 5798 §6.4), plus the
//! fault state halb adds: pure, no I/O, time passed in explicitly, so that
//! every transition can be tested without sleeping. The adapter feeds it
//! adverts and timer expiries and carries out the [`Action`]s it returns.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Serialize;

/// Where a virtual router stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VrrpState {
    Init,
    Backup,
    Master,
    /// A tracked pool has no usable backend: the node neither holds nor
    /// claims the virtual IPs.
    Fault,
}

impl VrrpState {
    pub fn as_str(self) -> &'static str {
        match self {
            VrrpState::Init => "init",
            VrrpState::Backup => "backup",
            VrrpState::Master => "master",
            VrrpState::Fault => "fault",
        }
    }
}

/// What the adapter must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority (0: leaving).
    Advertise { priority: u8 },
    /// Add the virtual IPs and announce them (gratuitous ARP).
    TakeVips,
    /// Remove the virtual IPs.
    ReleaseVips,
    /// The state changed; log it, alert, run `notify`.
    Transition {
        from: VrrpState,
        to: VrrpState,
        reason: String,
    },
}

/// One virtual router's settings as the machine needs them.
#[derive(Debug, Clone)]
pub struct Settings {
    pub priority: u8,
    pub advert_interval: Duration,
    pub preempt: bool,
    /// This node's primary address on the interface: ties are broken by it.
    pub address: Ipv4Addr,
}

/// The virtual router. Times are offsets from any fixed origin.
#[derive(Debug)]
pub struct Machine {
    settings: Settings,
    state: VrrpState,
    /// The master's interval as learnt from its adverts.
    master_adver_interval: Duration,
    /// When the adver timer (master) or master-down timer (backup) fires.
    deadline: Option<Duration>,
    /// Who is master, as far as this node knows.
    master: Option<Ipv4Addr>,
    transitions: u64,
}

impl Machine {
    pub fn new(settings: Settings) -> Machine {
        let interval = settings.advert_interval;
        Machine {
            settings,
            state: VrrpState::Init,
            master_adver_interval: interval,
            deadline: None,
            master: None,
            transitions: 0,
        }
    }

    pub fn state(&self) -> VrrpState {
        self.state
    }

    pub fn master(&self) -> Option<Ipv4Addr> {
        self.master
    }

    pub fn transitions(&self) -> u64 {
        self.transitions
    }

    pub fn priority(&self) -> u8 {
        self.settings.priority
    }

    /// The priority this node advertises now: 0 in fault.
    pub fn effective_priority(&self) -> u8 {
        match self.state {
            VrrpState::Fault | VrrpState::Init => 0,
            _ => self.settings.priority,
        }
    }

    /// When [`Machine::on_timer`] is due.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// `((256 - priority) * Master_Adver_Interval) / 256`.
    fn skew(&self) -> Duration {
        self.master_adver_interval * (256 - u32::from(self.settings.priority)) / 256
    }

    /// `3 * Master_Adver_Interval + Skew_Time`.
    pub fn master_down_interval(&self) -> Duration {
        self.master_adver_interval * 3 + self.skew()
    }

    fn go(&mut self, to: VrrpState, reason: String, actions: &mut Vec<Action>) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        self.transitions += 1;
        actions.push(Action::Transition { from, to, reason });
    }

    fn become_master(&mut self, now: Duration, reason: String) -> Vec<Action> {
        let mut actions = vec![
            Action::Advertise {
                priority: self.settings.priority,
            },
            Action::TakeVips,
        ];
        self.go(VrrpState::Master, reason, &mut actions);
        self.master = Some(self.settings.address);
        self.deadline = Some(now + self.settings.advert_interval);
        actions
    }

    fn become_backup(&mut self, now: Duration, reason: String, actions: &mut Vec<Action>) {
        if self.state == VrrpState::Master {
            actions.push(Action::ReleaseVips);
        }
        self.go(VrrpState::Backup, reason, actions);
        self.deadline = Some(now + self.master_down_interval());
    }

    /// Startup: backup, waiting a master-down interval for a master's
    /// adverts before claiming (halb never owns the addresses, so never 255).
    pub fn start(&mut self, now: Duration) -> Vec<Action> {
        let mut actions = Vec::new();
        self.master_adver_interval = self.settings.advert_interval;
        self.become_backup(now, "started".to_owned(), &mut actions);
        actions
    }

    /// The timer at [`Machine::deadline`] fired.
    pub fn on_timer(&mut self, now: Duration) -> Vec<Action> {
        match self.deadline {
            Some(deadline) if now >= deadline => {}
            _ => return Vec::new(),
        }
        match self.state {
            VrrpState::Backup => {
                let waited = self.master_down_interval();
                self.become_master(
                    now,
                    format!("no advert from a master for {}ms", waited.as_millis()),
                )
            }
            VrrpState::Master => {
                self.deadline = Some(now + self.settings.advert_interval);
                vec![Action::Advertise {
                    priority: self.settings.priority,
                }]
            }
            VrrpState::Init | VrrpState::Fault => {
                self.deadline = None;
                Vec::new()
            }
        }
    }

    /// A valid advert for this virtual router arrived from `source`.
    pub fn on_advert(
        &mut self,
        now: Duration,
        source: Ipv4Addr,
        priority: u8,
        interval: Duration,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        match self.state {
            VrrpState::Init | VrrpState::Fault => {}
            VrrpState::Backup => {
                if priority == 0 {
                    // The master is leaving: take over after the skew only.
                    self.deadline = Some(now + self.skew());
                    self.master = None;
                } else if !self.settings.preempt || priority >= self.settings.priority {
                    self.master_adver_interval = interval;
                    self.deadline = Some(now + self.master_down_interval());
                    self.master = Some(source);
                }
                // Else: a lower priority and preempt: discard, so that the
                // down timer fires and this node takes over.
            }
            VrrpState::Master => {
                if priority == 0 {
                    actions.push(Action::Advertise {
                        priority: self.settings.priority,
                    });
                    self.deadline = Some(now + self.settings.advert_interval);
                } else if priority > self.settings.priority
                    || (priority == self.settings.priority && source > self.settings.address)
                {
                    self.master_adver_interval = interval;
                    self.master = Some(source);
                    self.become_backup(
                        now,
                        format!("{source} advertises priority {priority}, above this node's"),
                        &mut actions,
                    );
                } else {
                    // Another master, of lower priority (a healed split, a
                    // link back): answer at once and announce the addresses
                    // again, so neighbours that learnt the other one's MAC
                    // come back here (keepalived does the same).
                    actions.push(Action::Advertise {
                        priority: self.settings.priority,
                    });
                    actions.push(Action::TakeVips);
                    self.deadline = Some(now + self.settings.advert_interval);
                }
            }
        }
        actions
    }

    /// A tracked pool lost (`true`) or regained (`false`) its last usable
    /// backend.
    pub fn set_fault(&mut self, now: Duration, fault: bool, reason: String) -> Vec<Action> {
        let mut actions = Vec::new();
        match (fault, self.state) {
            (true, VrrpState::Fault) | (false, VrrpState::Backup | VrrpState::Master) => {}
            (true, state) => {
                if state == VrrpState::Master {
                    actions.push(Action::Advertise { priority: 0 });
                    actions.push(Action::ReleaseVips);
                }
                self.go(VrrpState::Fault, reason, &mut actions);
                self.deadline = None;
                self.master = None;
            }
            (false, _) => {
                self.master_adver_interval = self.settings.advert_interval;
                self.become_backup(now, reason, &mut actions);
            }
        }
        actions
    }

    /// Graceful stop: a master tells the others at once (priority 0) and
    /// gives its addresses up.
    pub fn shutdown(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.state == VrrpState::Master {
            actions.push(Action::Advertise { priority: 0 });
            actions.push(Action::ReleaseVips);
        }
        self.go(VrrpState::Init, "stopping".to_owned(), &mut actions);
        self.deadline = None;
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const ADVERT: Duration = Duration::from_millis(100);

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, last)
    }

    fn machine(priority: u8, preempt: bool) -> Machine {
        Machine::new(Settings {
            priority,
            advert_interval: ADVERT,
            preempt,
            address: ip(11),
        })
    }

    fn takes_vips(actions: &[Action]) -> bool {
        actions.contains(&Action::TakeVips)
    }

    #[test]
    fn a_lone_node_becomes_master_after_the_master_down_interval() {
        let mut m = machine(150, true);
        m.start(Duration::ZERO);
        assert_eq!(m.state(), VrrpState::Backup);
        // 3 × 100 ms + (256 - 150) × 100 ms / 256 = 341.4 ms.
        assert_eq!(m.master_down_interval(), Duration::from_nanos(341_406_250));
        assert!(m.on_timer(340 * MS).is_empty());
        let actions = m.on_timer(342 * MS);
        assert!(takes_vips(&actions), "{actions:?}");
        assert_eq!(actions[0], Action::Advertise { priority: 150 });
        assert_eq!(m.state(), VrrpState::Master);
        assert_eq!(m.deadline(), Some(442 * MS));
        assert_eq!(m.on_timer(442 * MS), [Action::Advertise { priority: 150 }]);
    }

    #[test]
    fn adverts_of_a_master_keep_a_backup_waiting() {
        let mut m = machine(100, true);
        m.start(Duration::ZERO);
        for t in (100..2000).step_by(100) {
            assert!(m.on_advert(t * MS, ip(12), 150, ADVERT).is_empty());
            assert!(m.on_timer(t * MS + 50 * MS).is_empty());
        }
        assert_eq!(m.state(), VrrpState::Backup);
        assert_eq!(m.master(), Some(ip(12)));
    }

    #[test]
    fn a_master_yields_to_a_higher_priority_and_to_a_higher_address_on_a_tie() {
        let mut m = machine(150, true);
        m.start(Duration::ZERO);
        m.on_timer(400 * MS);
        let actions = m.on_advert(450 * MS, ip(12), 200, ADVERT);
        assert!(actions.contains(&Action::ReleaseVips), "{actions:?}");
        assert_eq!(m.state(), VrrpState::Backup);

        let mut tie = machine(150, true);
        tie.start(Duration::ZERO);
        tie.on_timer(400 * MS);
        let answer = tie.on_advert(450 * MS, ip(10), 150, ADVERT);
        assert!(
            takes_vips(&answer),
            "lower address: stays master and announces again: {answer:?}"
        );
        assert_eq!(tie.state(), VrrpState::Master);
        tie.on_advert(460 * MS, ip(12), 150, ADVERT);
        assert_eq!(
            tie.state(),
            VrrpState::Backup,
            "higher address wins the tie"
        );
    }

    #[test]
    fn preempt_takes_the_vips_back_from_a_lower_priority() {
        let mut m = machine(150, true);
        m.start(Duration::ZERO);
        // A lower-priority master's adverts are discarded...
        assert!(m.on_advert(100 * MS, ip(12), 100, ADVERT).is_empty());
        assert!(m.on_advert(200 * MS, ip(12), 100, ADVERT).is_empty());
        // ... so the down timer set at start fires.
        assert!(takes_vips(&m.on_timer(342 * MS)));
    }

    #[test]
    fn without_preempt_a_higher_priority_stays_backup() {
        let mut m = machine(150, false);
        m.start(Duration::ZERO);
        for t in (100..3000).step_by(100) {
            assert!(m.on_advert(t * MS, ip(12), 100, ADVERT).is_empty());
            assert!(m.on_timer(t * MS + 50 * MS).is_empty());
        }
        assert_eq!(m.state(), VrrpState::Backup);
    }

    #[test]
    fn a_leaving_master_is_replaced_after_the_skew_only() {
        let mut m = machine(100, true);
        m.start(Duration::ZERO);
        m.on_advert(100 * MS, ip(12), 150, ADVERT);
        m.on_advert(200 * MS, ip(12), 0, ADVERT);
        // skew = 156 × 100 ms / 256 = 60.9 ms
        assert!(m.on_timer(260 * MS).is_empty());
        assert!(takes_vips(&m.on_timer(261 * MS)));
    }

    #[test]
    fn fault_gives_the_vips_up_at_once_and_claims_nothing() {
        let mut m = machine(150, true);
        m.start(Duration::ZERO);
        m.on_timer(400 * MS);
        let actions = m.set_fault(500 * MS, true, "pool app has no usable backend".into());
        assert_eq!(actions[0], Action::Advertise { priority: 0 });
        assert_eq!(actions[1], Action::ReleaseVips);
        assert_eq!(m.state(), VrrpState::Fault);
        assert_eq!(m.effective_priority(), 0);
        assert_eq!(m.deadline(), None);
        assert!(m.on_advert(600 * MS, ip(12), 0, ADVERT).is_empty());
        let back = m.set_fault(700 * MS, false, "pool app is usable again".into());
        assert_eq!(m.state(), VrrpState::Backup, "{back:?}");
        assert!(takes_vips(&m.on_timer(700 * MS + m.master_down_interval())));
    }

    #[test]
    fn shutdown_of_a_master_sends_priority_zero_first() {
        let mut m = machine(150, true);
        m.start(Duration::ZERO);
        m.on_timer(400 * MS);
        let actions = m.shutdown();
        assert_eq!(actions[0], Action::Advertise { priority: 0 });
        assert_eq!(actions[1], Action::ReleaseVips);
        assert_eq!(m.transitions(), 3);
    }
}
