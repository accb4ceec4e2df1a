//! Redis for the tests of the rate limit's fleet store: the shared server CI starts, and
//! throwaway servers a test may pause, slow down or shut down.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::service_url;

/// The environment variable naming the Redis server the Redis tests use.
pub const REDIS_URL_VAR: &str = "VITALS_TEST_REDIS_URL";

/// The Redis server for `test`: see [`service_url`] (skipped with a note outside CI, a
/// failure under CI).
pub fn redis_url(test: &str) -> Option<String> {
    service_url(REDIS_URL_VAR, "Redis", test)
}

/// A key prefix no other test run uses, so tests sharing one Redis never share quotas.
pub fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!("test:{test}:{}:{nanos}", std::process::id())
}

/// A `redis-server` of the test's own on a free loopback port, nothing saved, `DEBUG`
/// allowed; shut down when dropped.
pub struct ThrowawayRedis {
    child: Child,
    port: u16,
}

impl ThrowawayRedis {
    /// Starts one when the shared server is configured (so `redis-server` is installed);
    /// `None` where the Redis tests skip.
    pub fn start(test: &str) -> Option<Self> {
        redis_url(test)?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_or_else(
                |error| panic!("no free port: {error}"),
                |address| address.port(),
            );
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--enable-debug-command", "yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("{test}: cannot start redis-server: {error}"));
        let redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{test}: redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(redis)
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
