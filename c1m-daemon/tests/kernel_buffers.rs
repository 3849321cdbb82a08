//! Kernel test: socket buffer memory is part of a connection's kernel cost.
//! This test process is the target (its own binary, so no other test's
//! sockets run in it): it accepts connections and stops reading while data
//! is sent to them.

mod common;

use std::{
    io::Write as _,
    net::{TcpListener, TcpStream},
    time::Duration,
};

use common::*;
use serde_json::Value;

fn report_on_me() -> Value {
    let output = daemon()
        .args(["report", "--json", "--no-children", "--duration", "200ms"])
        .args([
            "--interval",
            "100ms",
            "--pid",
            &std::process::id().to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn kernel_bytes_grow_with_unread_data() {
    if !kernel_tests_allowed("buffers") {
        return;
    }
    const N: usize = 40;
    const SENT: usize = 32 * 1024;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut clients = Vec::new();
    let mut accepted = Vec::new();
    for _ in 0..N {
        clients.push(TcpStream::connect(addr).unwrap());
        accepted.push(listener.accept().unwrap().0);
    }
    let idle = report_on_me();
    assert_eq!(idle["connections"]["current"], N, "{idle:#}");
    assert_eq!(idle["connections"]["preexisting"], N, "{idle:#}");

    for client in &mut clients {
        client.write_all(&[7u8; SENT]).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let full = report_on_me();

    let received = full["kernel_buffers"]["receive_allocated"]
        .as_u64()
        .unwrap();
    assert!(
        received >= (N * SENT) as u64,
        "{received} bytes queued for {N} x {SENT}: {full:#}"
    );
    let idle_kernel = idle["cost_per_connection"]["kernel_bytes"]
        .as_u64()
        .unwrap();
    let full_kernel = full["cost_per_connection"]["kernel_bytes"]
        .as_u64()
        .unwrap();
    assert!(
        full_kernel >= idle_kernel + SENT as u64,
        "kernel bytes per connection {idle_kernel} -> {full_kernel}: {full:#}"
    );
    let breakdown = &full["cost_per_connection"]["kernel_breakdown"];
    let sum: u64 = breakdown
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(sum, full_kernel);
    drop((clients, accepted));
}
