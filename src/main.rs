//! `hotleased`: the daemon's command line.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hotlease::bootstrap::{self, Bootstrap};
use hotlease::daemon::DaemonError;
use hotlease::northbound::BootError;

/// NETCONF-managed DHCPv4 server with VRRP and dual-device hot backup.
#[derive(Parser, Debug)]
#[command(name = "hotleased", version, about, long_about = None)]
struct Cli {
    /// Bootstrap TOML file: NETCONF listen address, SSH host key, users,
    /// storage directory. Everything else is configured over NETCONF.
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read a password on stdin and print its SHA-512 crypt hash
    /// (for `password-hash` in the bootstrap file).
    HashPassword,
    /// Check the configuration without starting: every problem, exit 78 if any
    ///
    /// The bootstrap file (--config), the SSH host key when it exists, and
    /// the startup datastore (and a pending confirmed commit) against the
    /// YANG modules and the daemon's rules. Each problem is printed on
    /// stderr with its file and path; nothing is written.
    Check,
}

/// Exit status for a bad bootstrap file (sysexits.h `EX_CONFIG`): the systemd
/// unit lists it in `RestartPreventExitStatus=`, since restarting cannot fix
/// the file.
const EX_CONFIG: u8 = 78;

fn hash_password() -> ExitCode {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    if stdin.lock().read_line(&mut line).is_err() {
        eprintln!("hotleased: cannot read the password from stdin");
        return ExitCode::FAILURE;
    }
    let pw = line.trim_end_matches(['\n', '\r']);
    if pw.is_empty() {
        eprintln!("hotleased: empty password");
        return ExitCode::FAILURE;
    }
    println!("{}", bootstrap::hash_password(pw));
    ExitCode::SUCCESS
}

/// Raise the soft descriptor limit to the hard one, as most daemons do (the
/// usual soft default is 1,024): the SSH connection caps bound what clients
/// can hold, and the rest stays for the lease store and the sockets.
fn raise_nofile_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the descriptor limit"),
            Err(e) => tracing::warn!(error = %e, soft, "cannot raise the descriptor limit"),
        },
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the descriptor limit"),
    }
}

/// `hotleased check`: problems on stderr, one a line; a summary on stdout.
fn check(path: &std::path::Path) -> ExitCode {
    let report = hotlease::check::check(path);
    for p in &report.problems {
        eprintln!("{p}");
    }
    if report.problems.is_empty() {
        let files: Vec<String> = report
            .checked
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        println!("configuration OK: {}", files.join(", "));
        ExitCode::SUCCESS
    } else {
        eprintln!("hotleased: {} problem(s) found", report.problems.len());
        ExitCode::from(EX_CONFIG)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::HashPassword) = cli.command {
        return hash_password();
    }
    let Some(path) = cli.config else {
        eprintln!("hotleased: --config FILE is required (see hotleased --help)");
        return ExitCode::from(2);
    };
    if let Some(Command::Check) = cli.command {
        return check(&path);
    }
    let boot = match Bootstrap::check(&path) {
        Ok(b) => b,
        Err(errors) => {
            // every problem at once: one edit fixes them all
            for e in errors {
                eprintln!("hotleased: {e}");
            }
            return ExitCode::from(EX_CONFIG);
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOTLEASE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // systemd sets JOURNAL_STREAM when stderr goes to the journal, which
    // stamps every line itself.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        logs.without_time().init();
    } else {
        logs.init();
    }
    hotlease::daemon::abort_on_panic();
    raise_nofile_limit();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hotleased: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(hotlease::daemon::run(boot)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(DaemonError::Boot(e @ BootError::Invalid { .. })) => {
            // The startup configuration is refused before it reached a
            // runtime. Restarting cannot fix it (EX_CONFIG stops systemd's
            // restarts); list every problem, as `hotleased check` does.
            let report = hotlease::check::check(&path);
            if report.problems.is_empty() {
                eprintln!("hotleased: {e}");
            }
            for p in &report.problems {
                eprintln!("hotleased: {p}");
            }
            ExitCode::from(EX_CONFIG)
        }
        Err(e) => {
            eprintln!("hotleased: {e}");
            ExitCode::FAILURE
        }
    }
}
