//! The `netmsg` command.
#![forbid(unsafe_code)]

mod decode;

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netmsg: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
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
            println!("{}", serde_json::to_string_pretty(&json)?);
            Ok(())
        }
    }
}
