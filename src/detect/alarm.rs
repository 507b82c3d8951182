//! Hysteresis: one incident, one event. An event opens when a level reaches `on`, stays open while
//! it keeps above `off`, and closes only after `cool` quiet steps, so one bad minute in a bad
//! half hour does not make ten events, and a flapping link makes one long one.

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub start: i64,
    /// Last step at or above `off`.
    pub end: i64,
    pub peak: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Opened(i64),
    Closed(Event),
}

#[derive(Debug, Clone)]
pub struct Hysteresis {
    on: f64,
    off: f64,
    cool: usize,
    open: Option<Event>,
    quiet: usize,
}

impl Hysteresis {
    pub fn new(on: f64, off: f64, cool: usize) -> Hysteresis {
        Hysteresis { on, off, cool: cool.max(1), open: None, quiet: 0 }
    }

    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    pub fn step(&mut self, ts: i64, level: f64) -> Option<Transition> {
        match &mut self.open {
            None if level >= self.on => {
                self.open = Some(Event { start: ts, end: ts, peak: level });
                self.quiet = 0;
                Some(Transition::Opened(ts))
            }
            None => None,
            Some(ev) => {
                if level >= self.off {
                    ev.end = ts;
                    ev.peak = ev.peak.max(level);
                    self.quiet = 0;
                    None
                } else {
                    self.quiet += 1;
                    if self.quiet >= self.cool { self.open.take().map(Transition::Closed) } else { None }
                }
            }
        }
    }

    /// Closes whatever is open (end of a replay, agent shutdown).
    pub fn finish(&mut self) -> Option<Event> {
        self.open.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_half_hour_is_one_event() {
        let mut h = Hysteresis::new(4.0, 2.0, 10);
        let mut opened = 0;
        let mut closed = Vec::new();
        // 30 steps alternating very bad and mildly bad, then quiet
        for t in 0..60 {
            let level = if t < 30 { if t % 2 == 0 { 5.0 } else { 2.5 } } else { 0.0 };
            match h.step(t, level) {
                Some(Transition::Opened(_)) => opened += 1,
                Some(Transition::Closed(e)) => closed.push(e),
                None => {}
            }
        }
        assert_eq!(opened, 1);
        assert_eq!(closed, vec![Event { start: 0, end: 29, peak: 5.0 }]);
        assert!(h.step(100, 3.9).is_none(), "below `on` does not open");
        assert_eq!(h.step(101, f64::INFINITY), Some(Transition::Opened(101)));
        assert_eq!(h.finish().map(|e| e.start), Some(101));
    }
}
