//! Wires the daemon together: boots the northbound from storage, starts the
//! NETCONF/SSH listener, and shuts everything down on SIGTERM/SIGINT with a
//! deadline.
//!
//! ```text
//!  signals ─► CancellationToken ─┬─► ssh listener ─► session tasks (child tokens)
//!                                ├─► northbound actor ─► subsystems (prepare/apply)
//!                                ├─► vrrp actor (masters resign with priority 0)
//!                                ├─► dhcp actor (+ socket task, lease writer thread)
//!                                ├─► backup services (one channel each; sessions closed)
//!                                └─► metrics endpoint (`[metrics]`: GET /metrics, reads the others' counters)
//!                                └─► notification pump (runtimes' events ─► subscribed sessions)
//! ```
//! Failing loudly: a panic anywhere aborts the process (`abort_on_panic`,
//! and `panic = "abort"` in release builds), and an actor that ends before
//! shutdown was asked for stops the daemon, which exits non-zero
//! (`supervise`). Either way systemd (`Restart=on-failure`) starts a whole
//! daemon again, instead of one whose NETCONF answers "shutting down" or
//! whose DHCP server drops every ACK.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::bootstrap::Bootstrap;
use crate::netconf::ssh;
use crate::northbound::notify::Bus;
use crate::northbound::store::{StorageLock, Store};
use crate::northbound::Northbound;

/// Errors that stop the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("storage dir {dir}: {source}")]
    Storage { dir: String, source: std::io::Error },
    #[error(transparent)]
    Lock(#[from] crate::northbound::store::LockError),
    #[error(transparent)]
    Boot(#[from] crate::northbound::BootError),
    #[error(transparent)]
    Ssh(#[from] ssh::SshError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("dhcp: {0}")]
    Dhcp(#[from] crate::dhcp::DhcpError),
    #[error("the {0} actor ended unexpectedly")]
    ActorEnded(&'static str),
}

/// Make every panic abort the process after the default report (message,
/// and backtrace with `RUST_BACKTRACE`). The actors' panics would otherwise
/// end only their task or thread, leaving a daemon that looks alive. Every
/// build aborts through this hook; release builds also compile with
/// `panic = "abort"` (the dev profile does not: the test harness needs
/// unwinding, and cargo would build every dependency twice).
pub fn abort_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::abort();
    }));
}

/// Wait for `task`; if it ends while nobody asked for shutdown, record
/// `name` as the actor that failed and stop the daemon.
fn supervise(
    name: &'static str,
    task: JoinHandle<()>,
    shutdown: &CancellationToken,
    failed: &Arc<OnceLock<&'static str>>,
) -> JoinHandle<()> {
    let (shutdown, failed) = (shutdown.clone(), failed.clone());
    tokio::spawn(async move {
        let _ = task.await;
        if !shutdown.is_cancelled() {
            error!(
                actor = name,
                "actor ended unexpectedly: stopping the daemon"
            );
            let _ = failed.set(name);
            shutdown.cancel();
        }
    })
}

/// Run until SIGTERM or SIGINT.
///
/// Everything that can refuse the start is acquired first, in this order:
/// the storage directory's lock, the NETCONF listening socket, the host
/// key, the metrics socket (`[metrics]`), the lease store. Only then does
/// the startup configuration reach the runtimes, which add and remove
/// addresses and send packets: a daemon
/// that cannot start leaves the box as it found it (a second daemon on the
/// same storage dir or port does not take the first one's virtual
/// addresses away).
pub async fn run(boot: Bootstrap) -> Result<(), DaemonError> {
    // held until run() returns; the kernel releases it however we exit
    let _lock = StorageLock::acquire(&boot.storage.dir)?;
    let store = Store::new(&boot.storage.dir).map_err(|source| DaemonError::Storage {
        dir: boot.storage.dir.display().to_string(),
        source,
    })?;
    // the port before the host key: a start refused on a busy port leaves
    // no new key file behind
    let listener = ssh::bind(boot.netconf.listen).await?;
    let host_key = ssh::load_or_create_host_key(&boot.netconf.host_key)?;
    let metrics_listener = match &boot.metrics {
        Some(m) => Some(crate::metrics::bind(m.listen).await?),
        None => None,
    };
    let (notifications, pump) =
        Bus::open(Some(&boot.storage.dir), boot.netconf.notification_replay).map_err(|source| {
            DaemonError::Storage {
                dir: boot.storage.dir.display().to_string(),
                source,
            }
        })?;
    crate::fault::announce();
    let shutdown = CancellationToken::new();
    // the DHCP runtime loads its leases before the northbound hands it the
    // running configuration
    let (dhcp, dhcp_hooks, dhcp_task) = crate::dhcp::start(
        &boot.storage.dir,
        crate::dhcp::network::SERVER_PORT,
        shutdown.child_token(),
        boot.dhcp.realtime_priority,
    )?;
    let pump_task = tokio::spawn(pump.run(shutdown.child_token()));
    dhcp.report_events(notifications.sink());
    let (vrrp, vrrp_task) = crate::vrrp::Vrrp::start(&boot.vrrp, shutdown.clone());
    vrrp.report_events(notifications.sink(), shutdown.child_token());
    vrrp.track_store(dhcp.store_health());
    let (backup, backup_task) = crate::backup::service::start(shutdown.child_token(), dhcp_hooks);
    let (mut backup, backup_task) = (backup, backup_task);
    backup.follow_vrrp(vrrp.subscribe(), vrrp.state_reader());
    backup.hold_preemption(vrrp.preempt_holds());
    let metrics_sources = (
        dhcp.metrics(),
        Box::new(vrrp.metrics_reader()) as crate::metrics::VrrpReader,
        backup.metrics(),
    );
    backup.report_events(notifications.sink());
    let subsystems: Vec<Box<dyn crate::config::Subsystem>> =
        vec![Box::new(vrrp), Box::new(dhcp), Box::new(backup)];
    let northbound = match Northbound::boot(store, subsystems) {
        Ok(mut nb) => {
            nb.set_notifications(notifications);
            nb
        }
        Err(e) => {
            shutdown.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(2), vrrp_task).await;
            let _ = tokio::time::timeout(Duration::from_secs(2), dhcp_task).await;
            let _ = tokio::time::timeout(Duration::from_secs(2), backup_task).await;
            return Err(e.into());
        }
    };
    let northbound = northbound
        .with_capabilities(crate::netconf::session::capabilities())
        .with_recovery_user(boot.netconf.recovery_user.clone())
        .with_transport_groups(Arc::new(boot.netconf.user_groups()));
    let (handle, nb_task) = northbound.spawn(shutdown.clone());
    let failed = Arc::new(OnceLock::new());
    let nb_task = supervise("northbound", nb_task, &shutdown, &failed);
    let vrrp_task = supervise("vrrp", vrrp_task, &shutdown, &failed);
    let dhcp_task = supervise("dhcp", dhcp_task, &shutdown, &failed);
    let backup_task = supervise("backup", backup_task, &shutdown, &failed);
    let metrics_task = metrics_listener.map(|listener| {
        let (dhcp, vrrp, backup) = metrics_sources;
        let registry = crate::metrics::registry(crate::metrics::Sources {
            dhcp,
            vrrp,
            backup,
            netconf: handle.stats().clone(),
        });
        let task = tokio::spawn(crate::metrics::serve(listener, registry, shutdown.clone()));
        supervise("metrics", task, &shutdown, &failed)
    });
    let _pump_task = supervise("notifications", pump_task, &shutdown, &failed);

    let signals = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                warn!("cannot install signal handlers");
                return;
            };
            tokio::select! {
                _ = term.recv() => info!("SIGTERM: shutting down"),
                _ = int.recv() => info!("SIGINT: shutting down"),
            }
            shutdown.cancel();
        })
    };

    let served = ssh::serve(&boot.netconf, listener, host_key, handle, shutdown.clone()).await;
    if served.is_ok() && !shutdown.is_cancelled() {
        error!(
            actor = "ssh server",
            "actor ended unexpectedly: stopping the daemon"
        );
        let _ = failed.set("ssh server");
    }
    shutdown.cancel();
    signals.abort();
    if tokio::time::timeout(Duration::from_secs(5), nb_task)
        .await
        .is_err()
    {
        warn!("northbound did not stop within 5 s");
    }
    // Masters send priority 0 and remove their addresses: the backup takes
    // over after Skew_Time instead of Master_Down_Interval.
    if tokio::time::timeout(Duration::from_secs(3), vrrp_task)
        .await
        .is_err()
    {
        warn!("vrrp did not stop within 3 s");
    }
    if tokio::time::timeout(Duration::from_secs(5), dhcp_task)
        .await
        .is_err()
    {
        warn!("dhcp server did not stop within 5 s");
    }
    // each backup session is closed with a reason the peer shows
    if tokio::time::timeout(Duration::from_secs(3), backup_task)
        .await
        .is_err()
    {
        warn!("backup services did not stop within 3 s");
    }
    if let Some(task) = metrics_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    served?;
    if let Some(actor) = failed.get() {
        return Err(DaemonError::ActorEnded(actor));
    }
    info!("stopped");
    Ok(())
}
