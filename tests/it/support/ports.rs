//! Free TCP ports for the gateway's listeners and admin server.
//!
//! Ports are picked at random *below* the kernel's ephemeral range
//! (`/proc/sys/net/ipv4/ip_local_port_range`), so they never collide with ports the OS hands
//! out for `bind(:0)` (our backends) or outgoing connections, and never twice in one test
//! binary run. Each candidate is checked by binding it on 127.0.0.1 and 0.0.0.0 first.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(32768)
}

/// A currently free TCP port on 127.0.0.1, distinct from every other port this process got
/// from here. (The port is released before returning; the caller binds it.)
pub fn free_port() -> u16 {
    let low = ephemeral_low();
    let (start, end) = if low > 12_000 {
        (10_000u16, low)
    } else {
        (0, 0)
    };
    let mut handed = HANDED_OUT.lock().unwrap();
    let handed = handed.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        let port = if end > start {
            fastrand::u16(start..end)
        } else {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        if handed.contains(&port) {
            continue;
        }
        // Free on loopback and on the wildcard address (the gateway may bind either).
        let free = TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("0.0.0.0", port)).is_ok();
        if free {
            handed.insert(port);
            return port;
        }
    }
    panic!("no free port found");
}

/// `n` distinct free ports.
pub fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| free_port()).collect()
}
