//! `netmsg msg decode` on real and malformed messages.

use std::io::Write;
use std::process::{Command, Stdio};

fn run(args: &[&str], input: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netmsg"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netmsg");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn golden(abi: &str, name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../mach/tests/layout/golden-");
    let text = std::fs::read_to_string(format!("{path}{abi}.txt")).unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(&format!("golden {name} "))
                .map(str::to_owned)
        })
        .unwrap()
}

#[test]
fn decodes_and_names_a_memory_object_routine() {
    for abi in ["x86_64", "i386"] {
        let (code, out, err) = run(
            &["msg", "decode", "--hex", "--abi", abi],
            golden(abi, "lock_request").as_bytes(),
        );
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["routine"]["routine"], "memory_object_lock_request");
        assert_eq!(v["header"]["id"], 2044);
        assert_eq!(v["header"]["remote_type"], "COPY_SEND");
        assert_eq!(v["items"][5]["type"], "MAKE_SEND_ONCE");
        assert_eq!(v["items"][5]["names"][0], 0x207);
        assert_eq!(v["items"][0]["values"][0], 0x2000);
    }
}

#[test]
fn decodes_raw_bytes_and_notifications() {
    let hex = golden("x86_64", "dead_name_notification");
    let raw = hex::decode(&hex).unwrap();
    let (code, out, _) = run(&["msg", "decode"], &raw);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["routine"]["routine"], "mach_notify_dead_name");
    assert_eq!(v["items"][0]["type"], "PORT_NAME");
    assert_eq!(v["items"][0]["values"][0], 0x606);
    assert_eq!(v["header"]["local_type"], "MOVE_SEND_ONCE");
}

#[test]
fn rejects_malformed_messages_with_clear_errors() {
    let good = hex::decode(golden("x86_64", "lock_request")).unwrap();
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    cases.push(("empty", Vec::new(), "truncated"));
    cases.push(("truncated header", good[..20].to_vec(), "truncated"));
    let mut short = good.clone();
    short.truncate(good.len() - 8);
    cases.push(("size says more than there is", short, "msgh_size says"));
    let mut count = good.clone();
    count[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
    let count_len = count.len() as u32;
    count[4..8].copy_from_slice(&count_len.to_le_bytes());
    cases.push(("count past the end", count, "only"));
    let mut unknown = good.clone();
    unknown[32] = 42;
    cases.push(("unknown type name", unknown, "unknown type 42"));
    let mut odd = good.clone();
    odd.extend_from_slice(&[0, 0]);
    let odd_len = odd.len() as u32;
    odd[4..8].copy_from_slice(&odd_len.to_le_bytes());
    cases.push(("size not a multiple of 4", odd, "multiple of 4"));
    let mut port = good.clone();
    let last = port.len() - 16;
    port[last + 1] = 32;
    cases.push(("inline port of the wrong size", port, "requires 64"));
    for (what, bytes, expect) in cases {
        let (code, out, err) = run(&["msg", "decode"], &bytes);
        assert_eq!(code, 1, "{what}: {err}");
        assert!(out.is_empty(), "{what}");
        assert!(err.starts_with("netmsg: error:"), "{what}: {err}");
        assert!(err.contains(expect), "{what}: {err:?} lacks {expect:?}");
        assert!(!err.contains("panicked"), "{what}");
    }
    let (code, _, err) = run(&["msg", "decode", "--hex"], b"12 3");
    assert_eq!(code, 1);
    assert!(err.contains("odd number of digits"), "{err}");
    let (code, _, err) = run(&["msg", "decode", "--hex"], b"zz");
    assert_eq!(code, 1);
    assert!(err.contains("not valid hexadecimal"), "{err}");
}
