//! One connection to the server, made when first needed and made again after it breaks: the
//! next command after any error that is not the server's reply (I/O, a timeout, a reply that
//! does not parse) starts on a fresh connection, so a reply left half-read is never taken
//! for another's.

use super::{IO_TIMEOUT, connection, unavailable};
use crate::broker::BrokerError;

/// A lazily (re)made connection.
pub struct Link {
    client: redis::Client,
    con: Option<redis::Connection>,
}

impl Link {
    /// A link to `client`'s server; nothing is connected yet.
    pub fn new(client: redis::Client) -> Link {
        Link { client, con: None }
    }

    /// Runs `cmd`. A Redis error keeps its code (`NOGROUP`, `BUSYGROUP`) in its text.
    pub fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T, BrokerError> {
        self.run(|con| cmd.query(con))
    }

    /// Runs `pipe`.
    pub fn query_pipe<T: redis::FromRedisValue>(
        &mut self,
        pipe: &redis::Pipeline,
    ) -> Result<T, BrokerError> {
        self.run(|con| pipe.query(con))
    }

    /// Runs `script` with `keys` and `args`.
    pub fn eval<T: redis::FromRedisValue>(
        &mut self,
        script: &str,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T, BrokerError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script).arg(keys.len()).arg(keys).arg(args);
        self.query(&cmd)
    }

    fn run<T>(
        &mut self,
        request: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, BrokerError> {
        if self.con.is_none() {
            self.con = Some(connection(&self.client, IO_TIMEOUT)?);
        }
        let con = self.con.as_mut().expect("connected above");
        request(con).map_err(|error| {
            // A reply from the server (`NOGROUP ...`) leaves the connection as it was;
            // anything else may have left it half-way through a reply.
            if error.code().is_none() {
                self.con = None;
            }
            unavailable(error)
        })
    }
}
