//! The binary: refuses non-loopback addresses with one line and a non-zero exit, and prints
//! its seed first.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_valley-faultproxy");

#[test]
fn refuses_non_loopback_with_one_line() {
    for args in [
        ["--listen", "192.0.2.1:9000", "--target", "127.0.0.1:9001"],
        ["--listen", "127.0.0.1:0", "--target", "10.1.2.3:9001"],
        ["--listen", "127.0.0.1:0", "--target", "[2001:db8::1]:9001"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("not loopback"), "{stderr}");
    }
}

#[test]
fn rejects_invalid_faults() {
    let out = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--target",
            "127.0.0.1:9",
            "--stall-probability",
            "3",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr).unwrap().contains("stall_probability"));
}

#[test]
fn prints_the_seed_then_the_addresses() {
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--target",
            "127.0.0.1:9",
            "--control",
            "127.0.0.1:0",
        ])
        .args(["--seed", "1234", "--latency-ms", "50"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(first, "seed 1234");
    assert!(
        second.starts_with("proxying 127.0.0.1:") && second.contains(" control 127.0.0.1:"),
        "{second}"
    );
}
