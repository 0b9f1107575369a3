//! `netmsg cert …` and `netmsg serve --enroll` as a user runs them.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

fn netmsg(state: &PathBuf, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_netmsg"))
        .arg("--state")
        .arg(state)
        .args(args)
        .envs(env.iter().copied())
        .env("NETMSG_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netmsg-cli-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(state: &PathBuf) -> (Daemon, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netmsg"))
        .arg("--state")
        .arg(state)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--enroll",
            "--reload-every",
            "200ms",
        ])
        .env("NETMSG_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(line.contains("listening on"), "{line}");
    (Daemon(child), addr)
}

#[test]
fn a_cluster_from_the_command_line() {
    let a = temp("a");
    let b = temp("b");
    let (code, out, err) = netmsg(
        &a,
        &["cert", "init-ca", "--cluster", "lab", "--name", "node-a"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let fingerprint = out
        .lines()
        .find_map(|l| l.split("public key): ").nth(1))
        .unwrap()
        .to_owned();
    assert_eq!(fingerprint.len(), 64);
    let (code, _, err) = netmsg(&a, &["cert", "init-ca", "--name", "node-a"], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("already exists") && err.contains("refusing to overwrite"),
        "{err}"
    );

    let (code, token, err) = netmsg(
        &a,
        &["cert", "token", "--name", "node-b", "--ttl", "10m"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_owned();
    assert!(
        token.starts_with(&format!("NMT1-{fingerprint}-")),
        "the token pins the CA: {token}"
    );

    let (daemon, addr) = serve(&a);
    let (code, _, err) = netmsg(&b, &["cert", "enroll", "--name", "node-b", &addr], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no token") && err.contains("NETMSG_TOKEN"),
        "{err}"
    );
    let (code, out, err) = netmsg(
        &b,
        &["cert", "enroll", "--name", "node-b", &addr],
        &[("NETMSG_TOKEN", &token)],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Enrolled as \"node-b\""), "{out}");
    let (code, _, err) = netmsg(
        &b,
        &["cert", "enroll", "--name", "node-b", &addr],
        &[("NETMSG_TOKEN", &token)],
    );
    assert_eq!(code, 1);
    assert!(err.contains("already enrolled"), "{err}");

    let (code, status, err) = netmsg(&b, &["cert", "status"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(status.contains("node:        node-b"), "{status}");
    assert!(status.contains(&fingerprint), "{status}");
    let (_, list, _) = netmsg(&a, &["cert", "token", "list"], &[]);
    assert!(list.contains("node-b") && list.contains("used"), "{list}");
    assert!(
        !list.contains(token.rsplit('.').next().unwrap()),
        "never the secret"
    );

    // Renewal over the node's own identity, through the daemon.
    let (code, out, err) = netmsg(&b, &["cert", "renew"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Renewed"), "{out}");

    // Mach RPCs from node-b to node-a's echo service, through netmsg.
    let (code, out, err) = netmsg(&b, &["ping", "node-a", &addr, "-c", "3", "-i", "10ms"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("64 bytes from node-a: seq=3"), "{out}");
    assert!(out.contains("3 requests, 3 replies, 0% lost"), "{out}");
    // A node that is not node-a is refused by name.
    let (code, _, err) = netmsg(&b, &["ping", "node-c", &addr, "-W", "1s"], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("linking to node-c"), "{err}");

    // node-b links to the running daemon with its enrolled identity.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let creds = certs::Credentials::load(&certs::StateDir::new(Some(b.clone())).unwrap()).unwrap();
    let tls = transport::NodeTls::from_ca(
        creds.chain.clone(),
        creds.key.clone_key(),
        &creds.ca,
        vec![creds.crl.clone().into()],
        false,
    )
    .unwrap();
    let (node_b, link) = runtime.block_on(async {
        let node = transport::Node::bind(
            "node-b",
            "127.0.0.1:0".parse().unwrap(),
            &tls,
            transport::TransportOptions::default(),
        )
        .unwrap();
        let link = node.dial("node-a", addr.parse().unwrap()).await.unwrap();
        (node, link)
    });
    assert_eq!(link.peer().node, "node-a");

    // Revocation: the daemon picks up the new CRL and closes node-b's live link.
    let (code, _, err) = netmsg(&a, &["cert", "revoke", "node-b"], &[]);
    assert_eq!(code, 0, "{err}");
    let closed = runtime.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(5), link.closed()).await
    });
    let closed = closed.expect("the daemon closes the revoked peer's link");
    assert_eq!(closed.code, Some(transport::CloseCode::Revoked), "{closed}");
    assert!(
        runtime
            .block_on(node_b.dial("node-a", addr.parse().unwrap()))
            .is_err(),
        "and refuses it afterwards"
    );
    let crl = temp("crl.der");
    let (code, _, err) = netmsg(&a, &["cert", "crl", "export", crl.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = netmsg(&b, &["cert", "crl", "import", crl.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoked"), "{out}");
    let (code, _, err) = netmsg(&b, &["cert", "crl", "import", crl.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("not newer"), "{err}");
    // Nor ping.
    let (code, _, err) = netmsg(&b, &["ping", "node-a", &addr, "-W", "1s"], &[]);
    assert_eq!(code, 1, "{err}");
    // A revoked node cannot renew.
    let (code, _, err) = netmsg(&b, &["cert", "renew"], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("revoked"), "{err}");
    drop(daemon);

    // A damaged file is named in the error.
    std::fs::write(b.join("node.pem"), "garbage").unwrap();
    let (code, _, err) = netmsg(&b, &["cert", "status"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("node.pem"), "{err}");
}

#[test]
fn help_shows_examples() {
    for cmd in [
        &["cert", "token", "--help"][..],
        &["cert", "enroll", "--help"],
        &["cert", "init-ca", "--help"],
        &["serve", "--help"],
    ] {
        let (code, out, _) = netmsg(&temp("help"), cmd, &[]);
        assert_eq!(code, 0);
        assert!(out.contains("Example"), "{cmd:?}: {out}");
    }
}

#[test]
fn status_flags_a_stale_crl() {
    let a = temp("stale");
    let ten_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(10 * 86400);
    certs::Authority::init(
        &certs::StateDir::new(Some(a.clone())).unwrap(),
        "lab",
        "node-a",
        ten_days_ago,
    )
    .unwrap();
    let (code, out, err) = netmsg(&a, &["cert", "status"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("STALE") && out.contains("crl import") && out.contains("--strict-crl"),
        "{out}"
    );
}

/// `netmsg cert status | head -1`: the reader stops early; netmsg ends
/// quietly, without a panic.
#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    let a = temp("pipe");
    let (code, _, err) = netmsg(
        &a,
        &["cert", "init-ca", "--cluster", "lab", "--name", "node-a"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_netmsg"))
        .arg("--state")
        .arg(&a)
        .args(["cert", "status"])
        .env("NETMSG_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before netmsg writes: every write fails with a broken pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}
