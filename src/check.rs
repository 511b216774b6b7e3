//! `hotleased check --config FILE` (like `kea-dhcp4 -t`, `keepalived -t`):
//! everything the daemon reads at start, checked without starting it, so
//! that a bad edit is found before a restart (the systemd unit runs it as
//! `ExecStartPre`).
//!
//! Checked: the bootstrap file (every problem, not only the first), the SSH
//! host key when it exists, and the startup datastore with a pending
//! persisted confirmed commit, each against the YANG modules (libyang) and
//! the daemon's own rules, exactly as a NETCONF `<validate>` of that
//! configuration would be. Each problem names its file and, in the
//! configuration, the node at fault (the `error-path` NETCONF would give).
//!
//! Reads only: nothing is created or locked, so it may run next to a
//! running daemon.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::bootstrap::{Bootstrap, BootstrapError};
use crate::northbound::error::RpcError;
use crate::northbound::{store::Store, validate};
use crate::yang;

/// One problem found: the file, the node at fault when known, the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub file: PathBuf,
    /// XML instance-identifier of the node (`/vrrp:vrrp/vrrp:group[...]`).
    pub path: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(path) = &self.path {
            write!(f, ": {path}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What a check found, and what it looked at.
#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<Problem>,
    /// The files checked and found good, for the success line.
    pub checked: Vec<PathBuf>,
}

/// Check the bootstrap file `config` and what it points to.
pub fn check(config: &Path) -> Report {
    let mut report = Report::default();
    let boot = match Bootstrap::check(config) {
        Ok(b) => b,
        Err(errors) => {
            // the message of a bootstrap error already names its file
            report.problems = errors
                .into_iter()
                .map(|e| Problem {
                    file: config.to_path_buf(),
                    path: None,
                    message: match e {
                        BootstrapError::Read { source, .. } => format!("cannot read: {source}"),
                        e => strip_file(&e.to_string(), config),
                    },
                })
                .collect();
            return report;
        }
    };
    report.checked.push(config.to_path_buf());
    let key = &boot.netconf.host_key;
    if key.exists() {
        match russh::keys::load_secret_key(key, None) {
            Ok(_) => report.checked.push(key.clone()),
            Err(e) => report.problems.push(Problem {
                file: key.clone(),
                path: None,
                message: format!("not a usable SSH host key: {e}"),
            }),
        }
    }
    let dir = &boot.storage.dir;
    if dir.exists() && !dir.is_dir() {
        report.problems.push(Problem {
            file: dir.clone(),
            path: None,
            message: "[storage] dir is not a directory".into(),
        });
        return report;
    }
    let store = Store::at(dir);
    let startup = dir.join("startup.xml");
    match store.read_startup() {
        Ok(None) => {}
        Ok(Some(xml)) => check_tree(&xml, &startup, "", &mut report),
        Err(e) => report.problems.push(unreadable(&startup, e)),
    }
    let confirm = dir.join("confirmed-commit.toml");
    match store.read_confirm() {
        Ok(None) => {}
        // the daemon loads one of them, depending on the time it starts
        Ok(Some(p)) => {
            check_tree(
                &p.pending_xml,
                &confirm,
                "pending configuration: ",
                &mut report,
            );
            check_tree(
                &p.rollback_xml,
                &confirm,
                "rollback configuration: ",
                &mut report,
            );
        }
        Err(e) => report.problems.push(unreadable(&confirm, e)),
    }
    report
}

fn unreadable(file: &Path, e: std::io::Error) -> Problem {
    Problem {
        file: file.to_path_buf(),
        path: None,
        message: format!("cannot read: {e}"),
    }
}

/// `config file F: message` → `message` (the file is printed first anyway).
fn strip_file(line: &str, config: &Path) -> String {
    let prefix = format!("config file {}: ", config.display());
    line.strip_prefix(&prefix).unwrap_or(line).to_string()
}

/// Parse and validate one configuration as the daemon loads it.
fn check_tree(xml: &str, file: &Path, what: &str, report: &mut Report) {
    if let Some(message) = crate::northbound::edit::repeated_in_document(xml) {
        report.problems.push(Problem {
            file: file.to_path_buf(),
            path: None,
            message: format!("{what}{message}"),
        });
        return;
    }
    let errors = match yang::parse_config_xml_all_errors(xml) {
        Err(e) => e.iter().map(crate::northbound::error::from_ly).collect(),
        Ok(mut tree) => match validate::full(&mut tree) {
            Ok(_) => Vec::new(),
            Err(e) => e,
        },
    };
    if errors.is_empty() {
        if !report.checked.iter().any(|f| f == file) {
            report.checked.push(file.to_path_buf());
        }
        return;
    }
    report
        .problems
        .extend(errors.into_iter().map(|e: RpcError| Problem {
            file: file.to_path_buf(),
            path: e.path,
            message: format!(
                "{what}{}",
                e.message.unwrap_or_else(|| e.tag.as_str().to_string())
            ),
        }));
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDjQgHuRBcORJhEtkkzYTqFySMzhoFrG01BmV7thEpJU a@b";

    /// A bootstrap file with its storage directory, and where its startup
    /// file goes.
    fn with_storage(dir: &Path) -> (PathBuf, PathBuf) {
        let file = bootstrap(dir, "");
        let storage = dir.join("storage");
        std::fs::create_dir(&storage).unwrap();
        (file, storage.join("startup.xml"))
    }

    fn bootstrap(dir: &Path, extra: &str) -> PathBuf {
        let file = dir.join("hotleased.toml");
        std::fs::write(
            &file,
            format!(
                "[netconf]\nlisten = \"127.0.0.1:8830\"\nhost-key = \"{key}\"\n{extra}\n\
                 [[netconf.user]]\nname = \"admin\"\nauthorized-keys = [\"{KEY}\"]\n\
                 [storage]\ndir = \"{storage}\"\n",
                key = dir.join("key").display(),
                storage = dir.join("storage").display(),
            ),
        )
        .unwrap();
        file
    }

    fn lines(r: &Report) -> Vec<String> {
        r.problems.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn a_missing_file_is_one_problem() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nope.toml");
        assert_eq!(
            lines(&check(&file)),
            vec![format!(
                "{}: cannot read: No such file or directory (os error 2)",
                file.display()
            )]
        );
    }

    #[test]
    fn a_good_file_without_storage_passes_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = bootstrap(dir.path(), "");
        let r = check(&file);
        assert!(r.problems.is_empty(), "{:?}", lines(&r));
        assert_eq!(r.checked, vec![file]);
        assert!(!dir.path().join("storage").exists());
        assert!(!dir.path().join("key").exists());
    }

    #[test]
    fn every_bootstrap_problem_is_listed() {
        let dir = tempfile::tempdir().unwrap();
        let file = bootstrap(dir.path(), "max-connections = 0\nkeepalive-count = 0");
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(
            &file,
            text.replace(KEY, "ssh-ed25519 AAAA-not-base64 x")
                + "[[netconf.user]]\nname = \"nobody\"\n",
        )
        .unwrap();
        let got = lines(&check(&file));
        let f = file.display();
        assert_eq!(
            got,
            vec![
                format!("{f}: [netconf] max-connections must be at least 1"),
                format!("{f}: [netconf] keepalive-count must be at least 1"),
                format!("{f}: user 'admin': bad authorized key: {}", {
                    let e = russh::keys::parse_public_key_base64("AAAA-not-base64").unwrap_err();
                    e.to_string()
                }),
                format!("{f}: user 'nobody' has neither password-hash nor authorized-keys"),
            ]
        );
        // a TOML error says where
        std::fs::write(&file, "[netconf]\nlisten = \"x\"\n\nbogus = 1\n").unwrap();
        let got = lines(&check(&file));
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with(&format!("{f}: line 2: ")), "{got:?}");
    }

    /// A startup file with a list entry's key given twice is a problem
    /// said with its place, not a crash: libyang's parse aborted on it.
    #[test]
    fn a_leaf_given_twice_in_startup_is_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        let (file, startup) = with_storage(dir.path());
        std::fs::write(
            &startup,
            r#"<dhcp-server xmlns="urn:hotlease:yang:dhcp-server"><ip-pool><name>p26</name><name>8</name></ip-pool><ip-pool><name>p26</name></ip-pool></dhcp-server>"#,
        )
        .unwrap();
        let r = check(&file);
        let got = lines(&r);
        assert_eq!(r.problems.len(), 1, "{got:?}");
        assert_eq!(r.problems[0].file, startup);
        assert!(
            r.problems[0].message.ends_with(
                "<name> is given more than once in /dhcp-server/ip-pool: its parent holds one"
            ),
            "{got:?}"
        );
    }

    #[test]
    fn startup_problems_name_their_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let (file, startup) = with_storage(dir.path());
        // two YANG errors at once: both reported, with their paths
        std::fs::write(
            &startup,
            r#"<vrrp xmlns="urn:hotlease:yang:vrrp"><group><interface>eth0</interface><vrid>1</vrid><priority>255</priority><virtual-ip>192.0.2.1</virtual-ip></group><group><interface>eth1</interface><vrid>2</vrid><advertise-interval>1</advertise-interval><virtual-ip>192.0.2.2</virtual-ip></group></vrrp>"#,
        )
        .unwrap();
        let r = check(&file);
        let got = lines(&r);
        assert_eq!(r.problems.len(), 2, "{got:?}");
        assert!(r.problems.iter().all(|p| p.file == startup), "{got:?}");
        let paths: Vec<_> = r.problems.iter().map(|p| p.path.clone().unwrap()).collect();
        assert!(paths[0].contains("vrrp:priority"), "{paths:?}");
        assert!(paths[1].contains("vrrp:advertise-interval"), "{paths:?}");
        // a rule of the daemon's own (overlapping pools), beyond YANG
        let pool = |name: &str, start: u8, end: u8| {
            format!(
                "<ip-pool><name>{name}</name><gateway>10.0.0.1</gateway><mask>255.255.255.0</mask>\
                 <section><start>10.0.0.{start}</start><end>10.0.0.{end}</end></section></ip-pool>"
            )
        };
        std::fs::write(
            &startup,
            format!(
                r#"<dhcp-server xmlns="urn:hotlease:yang:dhcp-server">{}{}</dhcp-server>"#,
                pool("a", 10, 20),
                pool("b", 15, 30)
            ),
        )
        .unwrap();
        let r = check(&file);
        // both sections are named
        let paths: Vec<_> = r.problems.iter().map(|p| p.path.clone()).collect();
        assert_eq!(
            paths,
            vec![
                Some("/dhcps:dhcp-server/dhcps:ip-pool[dhcps:name='a']/dhcps:section[dhcps:start='10.0.0.10']".to_string()),
                Some("/dhcps:dhcp-server/dhcps:ip-pool[dhcps:name='b']/dhcps:section[dhcps:start='10.0.0.15']".to_string()),
            ],
            "{:?}",
            lines(&r)
        );
        // not XML at all
        std::fs::write(&startup, "<vrrp").unwrap();
        let r = check(&file);
        assert_eq!(r.problems.len(), 1, "{:?}", lines(&r));
        assert_eq!(r.problems[0].file, startup);
        // fixed: both files pass
        std::fs::write(&startup, r#"<vrrp xmlns="urn:hotlease:yang:vrrp"/>"#).unwrap();
        let r = check(&file);
        assert!(r.problems.is_empty(), "{:?}", lines(&r));
        assert_eq!(r.checked, vec![file, startup]);
    }

    #[test]
    fn a_pending_confirmed_commit_and_the_host_key_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = bootstrap(dir.path(), "");
        let storage = dir.path().join("storage");
        let store = Store::new(&storage).unwrap();
        store
            .write_confirm(&crate::northbound::store::PersistedConfirm {
                persist_id: "p".into(),
                deadline_unix_ms: 0,
                rollback_xml: String::new(),
                pending_xml: r#"<vrrp xmlns="urn:hotlease:yang:vrrp"><bogus/></vrrp>"#.into(),
            })
            .unwrap();
        std::fs::write(dir.path().join("key"), "not a key").unwrap();
        let r = check(&file);
        let got = lines(&r);
        assert_eq!(r.problems.len(), 2, "{got:?}");
        assert_eq!(r.problems[0].file, dir.path().join("key"));
        assert_eq!(r.problems[1].file, storage.join("confirmed-commit.toml"));
        assert!(
            r.problems[1].message.starts_with("pending configuration: "),
            "{got:?}"
        );
    }
}
