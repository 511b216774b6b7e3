//! The actor's protocol timer: a one-shot `timerfd` with nanosecond
//! resolution.
//!
//! tokio's timer wheel rounds every deadline up to the next millisecond
//! tick, which made takeovers about 1 ms late and advertisements drift by
//! up to 1 ms — 10% of the shortest VRRP interval. A timerfd wakes the
//! runtime's epoll at the exact instant. Should the kernel refuse one, the
//! tokio timer is used instead.

// timerfd_create/settime and registering the descriptor with tokio are
// foreign calls.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

#[derive(Debug)]
pub struct Timer {
    fd: Option<AsyncFd<OwnedFd>>,
    armed: Option<Instant>,
}

impl Default for Timer {
    fn default() -> Self {
        Timer::new()
    }
}

impl Timer {
    /// Must run inside a tokio runtime (the descriptor is registered).
    pub fn new() -> Timer {
        Timer {
            fd: create().ok(),
            armed: None,
        }
    }

    /// Arm the timer for `deadline` (`None` disarms). Re-arming for the
    /// deadline already armed is free.
    pub fn set(&mut self, deadline: Option<Instant>) {
        if self.armed == deadline {
            return;
        }
        self.armed = deadline;
        let Some(fd) = &self.fd else { return };
        let value = match deadline {
            None => libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            Some(d) => {
                // A zero it_value disarms: fire "now" as 1 ns instead.
                let left = d
                    .saturating_duration_since(Instant::now())
                    .max(std::time::Duration::from_nanos(1));
                libc::timespec {
                    tv_sec: left.as_secs() as libc::time_t,
                    tv_nsec: left.subsec_nanos() as libc::c_long,
                }
            }
        };
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: value,
        };
        // SAFETY: fd is a live timerfd; spec is a valid itimerspec and the
        // old-value pointer may be null.
        let rc = unsafe {
            libc::timerfd_settime(fd.get_ref().as_raw_fd(), 0, &spec, std::ptr::null_mut())
        };
        if rc != 0 {
            // Fall back to the tokio timer from now on.
            self.fd = None;
        }
    }

    /// Resolves when the armed deadline is reached (never when disarmed).
    pub async fn expired(&mut self) {
        let Some(deadline) = self.armed else {
            return std::future::pending().await;
        };
        match &self.fd {
            None => tokio::time::sleep_until(deadline).await,
            Some(fd) => loop {
                let Ok(mut guard) = fd.readable().await else {
                    tokio::time::sleep_until(deadline).await;
                    break;
                };
                let mut count = [0u8; 8];
                let read = guard.try_io(|fd| {
                    // SAFETY: reads at most 8 bytes into a live 8-byte buffer.
                    let n = unsafe {
                        libc::read(fd.get_ref().as_raw_fd(), count.as_mut_ptr().cast(), 8)
                    };
                    if n < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(())
                    }
                });
                if let Ok(Ok(())) = read {
                    break;
                }
            },
        }
        self.armed = None;
    }
}

fn create() -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: plain timerfd_create(2); the result is checked.
    let raw = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: the AsyncFd owns the descriptor until it is dropped.
    unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn fires_at_the_deadline_with_sub_millisecond_precision() {
        let mut t = Timer::new();
        assert!(t.fd.is_some(), "timerfd available");
        let mut late = Vec::new();
        for i in 0..21u64 {
            let deadline = Instant::now() + Duration::from_micros(2_300 + 37 * i);
            t.set(Some(deadline));
            t.expired().await;
            late.push(Instant::now() - deadline);
        }
        late.sort();
        // The median, so that a loaded CI machine's odd delay does not
        // count; tokio's own timer would be ~0.5 ms late on average.
        assert!(
            late[10] < Duration::from_micros(300),
            "median lateness {:?}",
            late[10]
        );
    }

    #[tokio::test]
    async fn rearming_moves_the_deadline_and_none_disarms() {
        let mut t = Timer::new();
        let start = Instant::now();
        t.set(Some(start + Duration::from_secs(10)));
        t.set(Some(start + Duration::from_millis(5)));
        t.expired().await;
        assert!(Instant::now() - start < Duration::from_secs(1));
        t.set(None);
        let r = tokio::time::timeout(Duration::from_millis(20), t.expired()).await;
        assert!(r.is_err(), "a disarmed timer never fires");
    }
}
