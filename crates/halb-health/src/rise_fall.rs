//! The rise/fall state machine of active health checks: `rise` passes in a
//! row mark a backend up, `fall` failures in a row mark it down, as in
//! HAProxy and keepalived.

/// The verdict of active checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Up,
    Down,
}

/// Counts consecutive results and decides when the verdict changes.
#[derive(Debug, Clone)]
pub struct RiseFall {
    verdict: Verdict,
    streak: u32,
    rise: u32,
    fall: u32,
}

impl RiseFall {
    /// Start from `verdict`: a new backend starts `Down` and needs `rise`
    /// passes before it gets traffic.
    pub fn new(verdict: Verdict, rise: u32, fall: u32) -> Self {
        RiseFall {
            verdict,
            streak: 0,
            rise: rise.max(1),
            fall: fall.max(1),
        }
    }

    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// Mark up at once (used when the pool has nothing else in service).
    pub fn force_up(&mut self) {
        self.verdict = Verdict::Up;
        self.streak = 0;
    }

    /// Record one check result; returns the new verdict when it changed.
    pub fn record(&mut self, passed: bool) -> Option<Verdict> {
        let against = match (self.verdict, passed) {
            (Verdict::Up, true) | (Verdict::Down, false) => {
                self.streak = 0;
                return None;
            }
            (Verdict::Up, false) => self.fall,
            (Verdict::Down, true) => self.rise,
        };
        self.streak += 1;
        if self.streak < against {
            return None;
        }
        self.streak = 0;
        self.verdict = if passed { Verdict::Up } else { Verdict::Down };
        Some(self.verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rise_passes_in_a_row_bring_a_backend_up() {
        let mut state = RiseFall::new(Verdict::Down, 2, 3);
        assert_eq!(state.record(true), None);
        assert_eq!(state.record(false), None, "a failure breaks the streak");
        assert_eq!(state.record(true), None);
        assert_eq!(state.record(true), Some(Verdict::Up));
    }

    #[test]
    fn fall_failures_in_a_row_take_it_down() {
        let mut state = RiseFall::new(Verdict::Up, 2, 3);
        assert_eq!(state.record(false), None);
        assert_eq!(state.record(false), None);
        assert_eq!(state.record(true), None, "a pass resets the count");
        assert_eq!(state.record(false), None);
        assert_eq!(state.record(false), None);
        assert_eq!(state.record(false), Some(Verdict::Down));
        assert_eq!(state.verdict(), Verdict::Down);
    }

    #[test]
    fn a_flapping_backend_changes_state_at_most_once_per_rise_or_fall_results() {
        let mut state = RiseFall::new(Verdict::Up, 2, 2);
        let mut changes = 0;
        for i in 0..100 {
            // up, down, up, down ... : never two in a row
            if state.record(i % 2 == 0).is_some() {
                changes += 1;
            }
        }
        assert_eq!(changes, 0);
    }
}
