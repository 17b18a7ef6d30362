//! OAUTHBEARER tokens read from a file (`[broker.sasl] token_file`). Something else keeps
//! the file fresh (a sidecar, a Kubernetes projected service-account token); librdkafka asks
//! for a new token at 80% of the current one's lifetime, and every client context answers
//! by reading the file again. The token's `sub` claim is the principal and its `exp` claim
//! the expiry. The token is never logged.

use crate::config::secret::jwt_claims;
use rdkafka::client::OAuthToken;
use std::error::Error;
use std::path::PathBuf;

/// Where a client's bearer token comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenSource {
    file: Option<PathBuf>,
}

impl TokenSource {
    /// Tokens read from `file`, or none (librdkafka's own OAUTHBEARER settings apply).
    pub fn new(file: Option<PathBuf>) -> Self {
        TokenSource { file }
    }

    /// The current token, read from the file.
    pub fn token(&self) -> Result<OAuthToken, Box<dyn Error>> {
        let file = self.file.as_ref().ok_or(
            "no token_file in [broker.sasl]: set one, or configure sasl.oauthbearer.* in [broker.properties]",
        )?;
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read token_file {}: {e}", file.display()))?;
        let token = text.trim().to_owned();
        let (principal_name, lifetime_ms) =
            jwt_claims(&token).map_err(|why| format!("token_file {}: {why}", file.display()))?;
        Ok(OAuthToken {
            token,
            principal_name,
            lifetime_ms,
        })
    }
}
