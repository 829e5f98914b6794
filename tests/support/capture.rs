//! A running `nameflow capture` for the live, privilege and metrics tests:
//! started through any wrapper command (`ip netns exec`, `setpriv`), stderr collected, killed
//! on drop if a test fails before stopping it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Capture {
    pub child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Capture {
    /// Spawns `cmd` and waits until it prints that capture runs (after privileges are
    /// dropped).
    pub fn start(mut cmd: Command) -> Result<Capture, String> {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take().expect("piped");
        let lines = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let mut cap = Capture { child, stderr };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if cap.text().contains("capturing on") {
                return Ok(cap);
            }
            if let Ok(Some(status)) = cap.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                return Err(format!("capture exited early ({status}): {}", cap.text()));
            }
            if Instant::now() > deadline {
                return Err(format!("capture did not start in 30 s: {}", cap.text()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` to the capture process.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).expect("signal the capture process");
    }

    /// Waits up to `limit` for the exit and returns its code; kills and panics past it.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("capture did not exit within {limit:?}: {}", self.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code and stderr.
    pub fn stop(mut self) -> (Option<i32>, String) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let code = self.wait(Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(100));
        (code, self.text())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A few TCP sessions and DNS exchanges between 198.18.0.0/15 addresses, as Ethernet frames.
pub fn sample_frames(flows: u16) -> Vec<Vec<u8>> {
    use nameflow::synth::{DnsData, DnsRecord, DnsSpec, TcpSpec, Trace};
    use std::net::{Ipv4Addr, SocketAddr};
    let mut t = Trace::new();
    let mut ts = 1_000_000_000u64;
    for i in 0..flows {
        let client = Ipv4Addr::new(198, 18, 1, (i % 250) as u8 + 1);
        let server = Ipv4Addr::new(198, 19, 0, 10);
        let spec = TcpSpec {
            client: SocketAddr::new(client.into(), 20_000 + i),
            server: SocketAddr::new(server.into(), 80),
            client_first: b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n".to_vec(),
            ..TcpSpec::default()
        };
        ts = t.tcp_session(&spec, ts) + 50_000;
        let mut dns = DnsSpec::query("example.test", 1).answer(DnsRecord::new(
            "example.test",
            300,
            DnsData::A(server),
        ));
        dns.client = SocketAddr::new(client.into(), 30_000 + i);
        dns.server = SocketAddr::new(Ipv4Addr::new(198, 19, 0, 53).into(), 53);
        ts = t.dns_exchange(&dns, ts) + 50_000;
    }
    t.sort_by_time();
    t.frames().iter().map(|f| f.data.clone()).collect()
}
