//! `netmsg cert …`: the cluster CA and node enrollment from the command line.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use certs::{Authority, Credentials, JoinToken, StateDir};
use clap::Subcommand;

/// The cluster's default UDP port (enrollment and links share it).
pub(crate) const DEFAULT_PORT: u16 = 2345;
/// Where an enrolled node remembers its CA node (for renewal).
pub(crate) const CA_ADDR_NOTE: &str = "ca-addr";

#[derive(Subcommand, Debug)]
pub(crate) enum CertCommand {
    /// Create the cluster CA on this (first) node, with this node's certificate.
    ///
    /// Example: netmsg cert init-ca --cluster lab --name node-a
    InitCa {
        /// A name for the cluster, shown in the CA certificate.
        #[arg(long, default_value = "netmsg")]
        cluster: String,
        /// This node's name (default: the host name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Create a one-time join token for a node (on the CA node).
    ///
    /// Example: netmsg cert token --name node-b --ttl 1h
    ///          netmsg cert token list
    Token {
        #[command(subcommand)]
        action: Option<TokenAction>,
        /// The node the token admits.
        #[arg(long)]
        name: Option<String>,
        /// How long the token is valid (s, m, h, d).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: Duration,
        /// How many enrollments it allows.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Allow re-enrolling a name that has a certificate (revokes the old one).
        #[arg(long)]
        replace: bool,
    },
    /// Enroll this node with a join token at the CA node.
    ///
    /// Example: NETMSG_TOKEN=NMT1-… netmsg cert enroll --name node-b ca.example:2345
    Enroll {
        /// The join token (prefer --token-file or NETMSG_TOKEN: argv is visible to others).
        #[arg(long, env = "NETMSG_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Read the join token from this file.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// This node's name (default: the host name).
        #[arg(long)]
        name: Option<String>,
        /// The CA node, HOST[:PORT].
        host: String,
    },
    /// Renew this node's certificate now, with a new key.
    ///
    /// Example: netmsg cert renew
    Renew {
        /// The CA node (default: the one this node enrolled with).
        host: Option<String>,
    },
    /// Revoke a node's certificates, or one serial, and publish a new CRL (on the CA node).
    ///
    /// Example: netmsg cert revoke node-b
    Revoke {
        /// The node whose certificates to revoke.
        node: Option<String>,
        /// Revoke only this serial (hex).
        #[arg(long)]
        serial: Option<String>,
    },
    /// Show this node's certificate, the CA and the CRL (and, on the CA node, every certificate issued).
    ///
    /// Example: netmsg cert status
    Status,
    /// Export or import the signed CRL.
    ///
    /// Example: netmsg cert crl export crl.der; netmsg cert crl import crl.der
    Crl {
        #[command(subcommand)]
        action: CrlAction,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum TokenAction {
    /// List join tokens (never their secrets).
    List,
    /// Revoke a join token by ID.
    Revoke { id: String },
}

#[derive(Subcommand, Debug)]
pub(crate) enum CrlAction {
    /// Write the CRL (DER) to FILE, or standard output.
    Export { file: Option<PathBuf> },
    /// Install a newer CRL signed by the cluster CA.
    Import { file: PathBuf },
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and a unit, like 30m or 1h"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86400),
        other => return Err(format!("unknown unit {other:?} (use ms, s, m, h or d)")),
    })
}

pub(crate) fn host_name() -> anyhow::Result<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("reading the host name; pass --name")?;
    Ok(h.trim().to_owned())
}

pub(crate) fn resolve(host: &str) -> anyhow::Result<SocketAddr> {
    let with_port = if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !host.ends_with(']')
    {
        host.to_owned()
    } else {
        format!("{host}:{DEFAULT_PORT}")
    };
    with_port
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))
}

fn days(secs: i64) -> String {
    let d = secs as f64 / 86400.0;
    if d.abs() >= 1.0 {
        format!("{d:.0} days")
    } else {
        format!("{:.0} hours", secs as f64 / 3600.0)
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(crate) fn run(state: &StateDir, command: CertCommand) -> anyhow::Result<()> {
    let now = SystemTime::now();
    match command {
        CertCommand::InitCa { cluster, name } => {
            let name = match name {
                Some(n) => n,
                None => host_name()?,
            };
            let ca = Authority::init(state, &cluster, &name, now)?;
            out!(
                "Created the cluster CA \"{cluster}\" and node {name:?} in {}",
                state.root().display()
            )?;
            out!(
                "CA key fingerprint (SHA-256 of its public key): {}",
                hex::encode(ca.pin())
            )?;
            out!("Next: netmsg cert token --name NODE   (then enroll NODE with it)")?;
        }
        CertCommand::Token {
            action: Some(TokenAction::List),
            ..
        } => {
            let ca = Authority::load(state)?;
            out!(
                "{:<18} {:<20} {:>6} {:<10} expires",
                "id",
                "node",
                "uses",
                "state"
            )?;
            for t in ca.tokens() {
                let left = t.expires as i64 - unix(now);
                let status = if t.revoked {
                    "revoked"
                } else if left <= 0 {
                    "expired"
                } else if t.uses_left == 0 {
                    "used"
                } else {
                    "valid"
                };
                out!(
                    "{:<18} {:<20} {:>6} {:<10} {}",
                    t.id,
                    t.name,
                    t.uses_left,
                    status,
                    if left > 0 {
                        format!("in {}", days(left))
                    } else {
                        "past".into()
                    }
                )?;
            }
        }
        CertCommand::Token {
            action: Some(TokenAction::Revoke { id }),
            ..
        } => {
            let mut ca = Authority::load(state)?;
            ca.revoke_token(&id)?;
            out!("Token {id} revoked.")?;
        }
        CertCommand::Token {
            action: None,
            name,
            ttl,
            uses,
            replace,
        } => {
            let Some(name) = name else {
                bail!("which node is the token for? pass --name NODE")
            };
            let mut ca = Authority::load(state)?;
            let token = ca.create_token(&name, ttl, uses, replace, now)?;
            eprintln!(
                "Join token {} for {name:?}, valid {} for {uses} use(s). Keep it secret:",
                token.id,
                days(ttl.as_secs() as i64)
            );
            out!("{}", token.reveal())?;
            eprintln!("On {name}: NETMSG_TOKEN=<token> netmsg cert enroll --name {name} THIS-HOST");
        }
        CertCommand::Enroll {
            token,
            token_file,
            name,
            host,
        } => {
            let text = match (token, token_file) {
                (_, Some(f)) => std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?,
                (Some(t), None) => t,
                (None, None) => bail!("no token: pass --token-file FILE or set NETMSG_TOKEN (get one with `netmsg cert token --name NODE` on the CA node)"),
            };
            let token = JoinToken::parse(&text)?;
            let name = match name {
                Some(n) => n,
                None => host_name()?,
            };
            let addr = resolve(&host)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let creds = runtime.block_on(certs::enroll(state, addr, &token, &name))?;
            state.write_note(CA_ADDR_NOTE, &addr.to_string())?;
            out!(
                "Enrolled as {:?} (serial {}), valid for {}.",
                creds.node,
                creds.serial,
                days(unix(creds.not_after) - unix(now))
            )?;
            out!(
                "Credentials in {}. Start the node with: netmsg serve",
                state.root().display()
            )?;
        }
        CertCommand::Renew { host } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let creds = if Authority::load(state).is_ok() && host.is_none() {
                let mut ca = Authority::load(state)?;
                certs::renew_local(state, &mut ca, now)?
            } else {
                let addr = match host.or_else(|| state.read_note(CA_ADDR_NOTE)) {
                    Some(h) => resolve(&h)?,
                    None => bail!("which CA node? pass HOST (this node does not remember one)"),
                };
                runtime.block_on(certs::renew(state, addr))?
            };
            out!(
                "Renewed: serial {}, valid until {} from now.",
                creds.serial,
                days(unix(creds.not_after) - unix(now))
            )?;
        }
        CertCommand::Revoke { node, serial } => {
            if node.is_none() && serial.is_none() {
                bail!("what to revoke? pass NODE or --serial S");
            }
            let mut ca = Authority::load(state)?;
            let revoked = ca.revoke(node.as_deref(), serial.as_deref(), now)?;
            out!(
                "Revoked {} certificate(s): {}",
                revoked.len(),
                revoked.join(", ")
            )?;
            out!("The new CRL is in {}; running nodes on this host pick it up, others need `netmsg cert crl import`.", state.path("crl.der").display())?;
        }
        CertCommand::Status => status(state, now)?,
        CertCommand::Crl {
            action: CrlAction::Export { file },
        } => {
            let creds = Credentials::load(state)?;
            match file {
                Some(f) => std::fs::write(&f, &creds.crl)
                    .with_context(|| format!("writing {}", f.display()))?,
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(&creds.crl)?;
                }
            }
        }
        CertCommand::Crl {
            action: CrlAction::Import { file },
        } => {
            let der =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let info = Credentials::import_crl(state, &der)?;
            out!(
                "Imported CRL number {} ({} revoked).",
                info.number,
                info.revoked.len()
            )?;
        }
    }
    Ok(())
}

fn status(state: &StateDir, now: SystemTime) -> anyhow::Result<()> {
    let creds = Credentials::load(state)?;
    let left = unix(creds.not_after) - unix(now);
    out!("node:        {}", creds.node)?;
    out!(
        "certificate: serial {}, expires in {}{}",
        creds.serial,
        days(left),
        if left < 7 * 86400 {
            "  (renew soon: netmsg cert renew)"
        } else {
            ""
        }
    )?;
    let renew_at = certs::renewal_time(creds.not_before, creds.not_after, 0.5);
    out!(
        "renewal:     due in about {}",
        days(unix(renew_at) - unix(now))
    )?;
    out!(
        "CA:          key fingerprint {}",
        hex::encode(creds.ca_pin())
    )?;
    let crl = creds.crl_info();
    let age = unix(now) - crl.this_update as i64;
    let stale = crl.is_stale(now);
    out!(
        "CRL:         number {}, issued {} ago, {} revoked{}",
        crl.number,
        days(age),
        crl.revoked.len(),
        if stale {
            "  STALE: import a newer one (netmsg cert crl import); --strict-crl refuses it"
        } else {
            ""
        }
    )?;
    if let Ok(ca) = Authority::load(state) {
        out!()?;
        out!("issued by this CA ({}):", ca.cluster())?;
        out!(
            "  {:<20} {:<34} {:<12} status",
            "node",
            "serial",
            "expires in"
        )?;
        for c in ca.issued() {
            let left = c.not_after as i64 - unix(now);
            let status = if c.revoked.is_some() {
                "revoked"
            } else if left <= 0 {
                "expired"
            } else {
                "valid"
            };
            out!(
                "  {:<20} {:<34} {:<12} {status}",
                c.node,
                c.serial,
                if left > 0 { days(left) } else { "-".into() }
            )?;
        }
    }
    Ok(())
}
