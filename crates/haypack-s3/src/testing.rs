//! The S3 servers the test suite runs against, as `scripts/s3-servers.sh` describes them in the
//! environment (`HAYPACK_TEST_GARAGE_*`, `HAYPACK_TEST_MOTO_*`).
//!
//! A test that needs them is `#[ignore]`d, so a bare `cargo test` reports it ignored, never
//! passed; the test command (scripts/test.sh) starts the servers and runs every test with
//! `--include-ignored`. A test that runs and finds no server fails.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::{S3Options, S3Store};

/// One S3 test server.
#[derive(Debug, Clone)]
pub struct TestServer {
    /// `garage` or `moto`.
    pub name: &'static str,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Access key id.
    pub key_id: String,
    /// Secret key.
    pub secret: String,
    /// A bucket the key may read and write.
    pub bucket: String,
    /// The server's region.
    pub region: String,
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

impl TestServer {
    /// The server called `name` (`garage` or `moto`). Panics if it is not running.
    pub fn get(name: &'static str) -> Self {
        let var = |field: &str| std::env::var(format!("HAYPACK_TEST_{}_{field}", name.to_uppercase())).ok();
        match (var("ENDPOINT"), var("KEY_ID"), var("SECRET"), var("BUCKET"), var("REGION")) {
            (Some(endpoint), Some(key_id), Some(secret), Some(bucket), Some(region)) => {
                TestServer { name, endpoint, key_id, secret, bucket, region }
            }
            _ => panic!("the {name} test server is not running: run the tests with scripts/test.sh"),
        }
    }

    /// Both servers. Panics if either is not running.
    pub fn all() -> Vec<Self> {
        ["garage", "moto"].into_iter().map(Self::get).collect()
    }

    /// A fresh, empty `s3://bucket/prefix` URL for one test.
    pub fn fresh_url(&self, test: &str) -> String {
        let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        format!("s3://{}/{test}-{}-{nanos:x}-{n}", self.bucket, std::process::id())
    }

    /// Options that reach this server, with `part_size` bytes per part.
    pub fn options(&self, part_size: usize) -> S3Options {
        S3Options {
            endpoint_url: Some(self.endpoint.clone()),
            region: Some(self.region.clone()),
            credentials: Some((self.key_id.clone(), self.secret.clone())),
            part_size,
            concurrency: 4,
            server_side_copy: true,
            ..S3Options::default()
        }
    }

    /// A store at a fresh prefix.
    pub async fn store(&self, test: &str, part_size: usize) -> S3Store {
        S3Store::connect(&self.fresh_url(test), self.options(part_size)).await.expect("test server options are valid")
    }

    /// The environment for a `haypack` child process to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
            ("AWS_REGION", self.region.clone()),
        ]
    }
}
