//! `hotleased`: the daemon's command line.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hotlease::bootstrap::{self, Bootstrap};

/// NETCONF-managed DHCPv4 server with VRRP and dual-device hot backup.
#[derive(Parser, Debug)]
#[command(name = "hotleased", version, about, long_about = None)]
struct Cli {
    /// Bootstrap TOML file: NETCONF listen address, SSH host key, users,
    /// storage directory. Everything else is configured over NETCONF.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read a password on stdin and print its SHA-512 crypt hash
    /// (for `password-hash` in the bootstrap file).
    HashPassword,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::HashPassword) = cli.command {
        return hash_password();
    }
    let Some(path) = cli.config else {
        eprintln!("hotleased: --config FILE is required (see hotleased --help)");
        return ExitCode::from(2);
    };
    let boot = match Bootstrap::load(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("hotleased: {e}");
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
        Err(e) => {
            eprintln!("hotleased: {e}");
            ExitCode::FAILURE
        }
    }
}
