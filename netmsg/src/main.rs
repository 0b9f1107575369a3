//! The `netmsg` command.
#![forbid(unsafe_code)]

/// `println!` that returns the write's result: a closed standard output
/// (`netmsg cert status | head -4`) is then an error `main` ends quietly on,
/// not a panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)
    }};
}

mod cert;
mod decode;
mod ping;
mod serve;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "netmsg",
    version,
    about = "Mach messages between machines over QUIC"
)]
struct Cli {
    /// The node's state directory (default: $XDG_STATE_HOME/netmsg).
    #[arg(long, global = true)]
    state: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The cluster CA, join tokens, enrollment, renewal and revocation.
    Cert {
        #[command(subcommand)]
        command: cert::CertCommand,
    },
    /// Run this node: its links, netmsg with the echo service as its root
    /// port, enrollment (--enroll, CA node), renewal.
    ///
    /// Example: netmsg serve --enroll
    Serve(serve::ServeArgs),
    /// Mach RPCs to a node's echo service through netmsg, with round-trip
    /// times (the node runs `netmsg serve`; this node's credentials link).
    ///
    /// Example: netmsg ping node-a 127.0.0.1:2345
    Ping(ping::PingArgs),
    /// Work with raw Mach messages.
    Msg {
        #[command(subcommand)]
        command: MsgCommand,
    },
}

#[derive(Subcommand, Debug)]
enum MsgCommand {
    /// Decode one raw GNU Mach message and print it as JSON.
    ///
    /// Example: printf '%s' "$HEX" | netmsg msg decode --hex --abi i386
    Decode {
        /// The message layout: x86_64 (the current LP64 ABI) or i386.
        #[arg(long, default_value = "x86_64")]
        abi: mach::Abi,
        /// Read hexadecimal text (whitespace ignored) instead of raw bytes.
        #[arg(long)]
        hex: bool,
        /// Read from this file instead of standard input.
        file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A daemon logs what it does; `ping` prints its own lines.
    let default_log = match cli.command {
        Command::Ping(_) => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NETMSG_LOG")
                .unwrap_or_else(|_| default_log.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output has gone (`| head`): nothing to report.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("netmsg: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let state = || certs::StateDir::new(cli.state.clone());
    match cli.command {
        Command::Cert { command } => cert::run(&state()?, command),
        Command::Serve(args) => serve::run(state()?, args),
        Command::Ping(args) => ping::run(state()?, args),
        Command::Msg {
            command: MsgCommand::Decode { abi, hex, file },
        } => {
            let mut input = Vec::new();
            match &file {
                Some(path) => {
                    input = std::fs::read(path)
                        .with_context(|| format!("reading {}", path.display()))?
                }
                None => {
                    std::io::stdin()
                        .read_to_end(&mut input)
                        .context("reading standard input")?;
                }
            }
            let bytes = if hex {
                decode::parse_hex(&input)?
            } else {
                input
            };
            let json = decode::describe(abi, &bytes)?;
            out!("{}", serde_json::to_string_pretty(&json)?)?;
            Ok(())
        }
    }
}
