//! Secrets in configuration: where they come from (an environment variable or a file, never
//! the config file itself), how they are kept (a [`Secret`] prints as `***`, so it reaches
//! the client library and nothing else: no log line, no `Debug` output), which librdkafka
//! properties count as secrets, and what a bearer token says of itself.

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// A value of `[broker.secrets]`: `{ env = "NAME" }` or `{ file = "path" }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// The environment variable holding the value.
    pub env: Option<String>,
    /// The file holding the value.
    pub file: Option<PathBuf>,
}

/// A secret read from the environment or a file. `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the client library only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The secret in environment variable `name`, which must be set and not empty.
pub fn from_env(name: &str) -> Result<Secret, String> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(Secret(value)),
        Ok(_) => Err(format!("environment variable `{name}` is empty")),
        Err(_) => Err(format!("environment variable `{name}` is not set")),
    }
}

/// The secret in file `path`, without one trailing newline (as `echo` and editors leave it).
pub fn from_file(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read secret file `{}`: {e}", path.display()))?;
    let value = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if value.is_empty() {
        return Err(format!("secret file `{}` is empty", path.display()));
    }
    Ok(Secret(value.to_owned()))
}

/// Whether a librdkafka property holds a secret (and so must not be written in the file).
pub fn is_secret_property(key: &str) -> bool {
    key.contains("password") || key.contains("secret") || key == "ssl.key.pem"
}

/// What a bearer token says of itself: the principal (`sub`) and when it expires (`exp`,
/// in milliseconds since the Unix epoch). The token is a JWT; its signature is for the
/// broker to check.
pub fn jwt_claims(token: &str) -> Result<(String, i64), String> {
    use base64::Engine as _;
    let payload = token
        .split('.')
        .nth(1)
        .ok_or("the token is not a JWT (header.payload.signature)")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| format!("the token's payload is not base64url: {e}"))?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("the token's payload is not JSON: {e}"))?;
    let subject = claims["sub"]
        .as_str()
        .ok_or("the token has no `sub` claim (the principal)")?;
    let expires = claims["exp"]
        .as_i64()
        .ok_or("the token has no numeric `exp` claim")?;
    Ok((subject.to_owned(), expires.saturating_mul(1000)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let shown = format!("{:?}", vec![Secret("hunter2".into())]);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }

    #[test]
    fn a_secret_file_loses_one_trailing_newline_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret\r\n").unwrap();
        assert_eq!(from_file(&file).unwrap().expose(), "s3cret");
        std::fs::write(&file, "two\n\n").unwrap();
        assert_eq!(from_file(&file).unwrap().expose(), "two\n");
        std::fs::write(&file, "\n").unwrap();
        assert!(from_file(&file).unwrap_err().contains("is empty"));
        assert!(from_file(&dir.path().join("absent")).is_err());
    }

    #[test]
    fn a_jwt_gives_its_subject_and_expiry() {
        // {"alg":"none"} . {"sub":"plexus","exp":2000000000} . (no signature)
        let token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJwbGV4dXMiLCJleHAiOjIwMDAwMDAwMDB9.";
        assert_eq!(
            jwt_claims(token),
            Ok(("plexus".to_owned(), 2_000_000_000_000))
        );
        assert!(jwt_claims("not a token").is_err());
        assert!(jwt_claims("eyJhbGciOiJub25lIn0.eyJzdWIiOiJwbGV4dXMifQ.").is_err());
    }

    #[test]
    fn secret_properties_are_recognised() {
        for key in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "ssl.key.pem",
            "sasl.oauthbearer.client.secret",
        ] {
            assert!(is_secret_property(key), "{key}");
        }
        for key in ["ssl.ca.location", "sasl.username", "ssl.keystore.location"] {
            assert!(!is_secret_property(key), "{key}");
        }
    }
}
