//! What `/healthz`, `/readyz` and systemd's notifications report.
//!
//! Per poller: when its loop last ran (alive) and when it last read a page (making progress).
//! Both are fed per page, not per slice or window, so a long catch-up after an outage is alive
//! and ready from its first page: ready means guarding, not caught up (the lag metric shows the
//! catch-up). READY=1 goes to systemd once every poller has read a page; WATCHDOG=1 on every
//! loop turn and every page.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Per poller: (last loop turn, last page read).
type Times = HashMap<String, (Option<Instant>, Option<Instant>)>;

#[derive(Debug)]
pub struct Health {
    started: Instant,
    poll_interval: Duration,
    pollers: Mutex<Times>,
    notified: AtomicBool,
    /// Whether the loops to watch are known: given at start, or set once the accounts and
    /// regions are resolved. Until then nothing is guarded, so nothing is ready.
    resolved: AtomicBool,
    /// Why the daemon is not acting, if it is not (e.g. another instance holds the lease).
    standby: Mutex<Option<String>>,
}

impl Health {
    pub fn new(pollers: &[String], poll_interval: Duration) -> Arc<Self> {
        let map = pollers.iter().map(|r| (r.clone(), (None, None))).collect();
        Arc::new(Self {
            started: Instant::now(),
            poll_interval,
            pollers: Mutex::new(map),
            notified: AtomicBool::new(false),
            resolved: AtomicBool::new(!pollers.is_empty()),
            standby: Mutex::new(None),
        })
    }

    /// The loops to watch from now on (pollers and queue consumers, once the accounts and
    /// regions are known, or when the lease is won or lost); loops kept keep their times.
    pub fn set_pollers(&self, names: &[String]) {
        self.resolved.store(true, Ordering::SeqCst);
        let mut all = self.lock();
        all.retain(|k, _| names.contains(k));
        for n in names {
            all.entry(n.clone()).or_insert((Some(Instant::now()), None));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Times> {
        self.pollers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A poll loop turned: also the systemd watchdog ping (a no-op without `NOTIFY_SOCKET`).
    pub fn attempted(&self, poller: &str) {
        self.lock().entry(poller.to_owned()).or_default().0 = Some(Instant::now());
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
    }

    /// A poller read a page; once every poller has, tells systemd the service is ready.
    pub fn progressed(&self, poller: &str) {
        let now = Instant::now();
        *self.lock().entry(poller.to_owned()).or_default() = (Some(now), Some(now));
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        if self.ready().is_ok() && !self.notified.swap(true, Ordering::SeqCst) {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
            tracing::info!("Ready: every poller is reading event history.");
        }
    }

    /// Marks the daemon as standing by (or acting again with `None`). Leaving standby starts the
    /// pollers' clocks afresh.
    pub fn set_standby(&self, why: Option<String>) {
        let leaving = why.is_none();
        if !leaving {
            // Standing by is this instance's job now: systemd must see it started and alive
            // (each retry pings the watchdog); /readyz still says standby.
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            if !self.notified.swap(true, Ordering::SeqCst) {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
            }
        }
        *self.standby.lock().unwrap_or_else(|e| e.into_inner()) = why;
        if leaving {
            for times in self.lock().values_mut() {
                *times = (Some(Instant::now()), None);
            }
        }
    }

    /// How stale a poller may be before the daemon is unhealthy or not ready: three poll
    /// intervals, and never less than a minute (a throttled read backs off up to 30 s).
    fn limit(&self) -> Duration {
        (self.poll_interval * 3).max(Duration::from_secs(60))
    }

    /// Alive: every poller's loop has run recently (or we just started, or stand by).
    pub fn healthy(&self) -> Result<(), String> {
        let limit = self.limit();
        if self.started.elapsed() < limit || self.standby.lock().unwrap_or_else(|e| e.into_inner()).is_some()
        {
            return Ok(());
        }
        for (poller, (attempt, _)) in self.lock().iter() {
            if attempt.is_none_or(|t| t.elapsed() > limit) {
                return Err(format!(
                    "{poller}: no poll attempted for over {}s",
                    limit.as_secs()
                ));
            }
        }
        Ok(())
    }

    /// Ready: acting (not on standby), and every poller has read a page recently.
    pub fn ready(&self) -> Result<(), String> {
        if let Some(why) = self.standby.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return Err(format!("standby: {why}"));
        }
        if !self.resolved.load(Ordering::SeqCst) {
            return Err("starting: the accounts and regions to guard are not resolved yet".into());
        }
        let limit = self.limit();
        for (poller, (_, ok)) in self.lock().iter() {
            match ok {
                None => return Err(format!("{poller}: no page read yet")),
                Some(t) if t.elapsed() > limit => {
                    return Err(format!("{poller}: last page read {}s ago", t.elapsed().as_secs()));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ready_on_the_first_page_unhealthy_when_a_loop_stalls() {
        let h = Health::new(&["eu-west-1".into(), "us-east-1".into()], Duration::from_secs(15));
        assert!(h.ready().is_err());
        h.progressed("eu-west-1");
        assert!(h.ready().unwrap_err().contains("us-east-1"));
        h.progressed("us-east-1");
        assert!(h.ready().is_ok());
        tokio::time::advance(Duration::from_secs(50)).await;
        h.attempted("eu-west-1");
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(h.healthy().unwrap_err().contains("us-east-1"));
        h.set_standby(Some("another instance holds the lease".into()));
        assert!(h.ready().unwrap_err().starts_with("standby"));
    }

    #[tokio::test(start_paused = true)]
    async fn not_ready_until_the_loops_to_watch_are_known() {
        // regions = ["all"] or [accounts]: the pollers are known only once resolved.
        let h = Health::new(&[], Duration::from_secs(15));
        assert!(h.ready().unwrap_err().contains("not resolved"));
        h.set_pollers(&["eventbridge:events".into()]);
        assert!(h.ready().unwrap_err().contains("eventbridge:events"));
        h.progressed("eventbridge:events");
        assert!(h.ready().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_standby_tells_systemd_it_started() {
        // Under systemd (Type=notify, TimeoutStartSec=180, WatchdogSec=300) a standby that never
        // sends READY=1 is killed after 180 s and restarted, forever; one that stops sending
        // WATCHDOG=1 after losing the lease is aborted.
        let h = Health::new(&["us-east-1".into()], Duration::from_secs(15));
        h.set_standby(Some("another instance holds the lease".into()));
        assert!(
            h.notified.load(Ordering::SeqCst),
            "standing by, READY=1 was never sent"
        );
        assert!(
            h.ready().unwrap_err().starts_with("standby"),
            "/readyz still says standby"
        );
    }
}
