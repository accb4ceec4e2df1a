//! What every store of ours in Redis shares (feature `redis`): the client opened from a URL —
//! an unusable URL is an error that names it, its password redacted — and the one connection a
//! store makes at first use, which fails fast rather than making a request wait on reconnects.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::secret::redact_url;

/// A Redis URL the client cannot use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisUrlError(String);

impl fmt::Display for RedisUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RedisUrlError {}

/// A Redis client and the one connection of the store that owns it.
pub struct RedisConnection {
    client: redis::Client,
    url: String,
    connection: OnceLock<Result<ConnectionManager, String>>,
}

impl RedisConnection {
    /// A client for the Redis at `url` (`redis://host:6379/`); nothing is connected yet.
    ///
    /// # Errors
    ///
    /// The URL is not a Redis URL (the error names it, its password redacted).
    pub fn open(url: &str) -> Result<Self, RedisUrlError> {
        let client = redis::Client::open(url)
            .map_err(|error| RedisUrlError(format!("Redis URL {:?}: {error}", redact_url(url))))?;
        Ok(Self {
            client,
            url: redact_url(url),
            connection: OnceLock::new(),
        })
    }

    /// The URL, its password redacted: for logs and `Debug`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The connection, made at the first call with `timeout` for connecting and for each
    /// answer, and one try: a request waits at most the timeout, and reconnecting is left to the
    /// next request. Clones share one multiplexed connection.
    ///
    /// # Errors
    ///
    /// The connection could not be set up (the same error on every later call).
    pub fn get(&self, timeout: Duration) -> Result<ConnectionManager, String> {
        self.connection
            .get_or_init(|| {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1);
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                    .map_err(|error| error.to_string())
            })
            .clone()
    }
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnection")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unusable_url_is_an_error_without_its_password() {
        let error = RedisConnection::open("mysql://user:s3cret@db:3306/").unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
        let opened = RedisConnection::open("redis://:s3cret@127.0.0.1:6379/").unwrap();
        assert!(!opened.url().contains("s3cret"));
        assert!(!format!("{opened:?}").contains("s3cret"));
    }
}
