//! `[broker.kafka.tls]`, `[broker.kafka.sasl]` and `[broker.kafka.secrets]`: how Plexus proves who it is to a
//! secured Kafka cluster, and where the secrets for that come from.
//!
//! Secrets are never written in `plexus.toml`: each names an environment variable (`*_env`)
//! or a file (`*_file`, e.g. a mounted Kubernetes secret) that is read when the config is
//! loaded (see [`crate::config::secret`]). A secret put into `[broker.kafka.properties]` is an error.
//!
//! [`resolve`] turns the tables into librdkafka properties (`security.protocol`, `ssl.*`,
//! `sasl.*`), checking every file and secret up front so a mistake is reported with its
//! file:line:col instead of as a handshake failure later.

use super::KafkaConfig;
use crate::config::error::{ConfigError, Locator};
use crate::config::secret::{self, Secret, SecretSource, is_secret_property, jwt_claims};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// `[broker.kafka.tls]`: connect over TLS (`security.protocol` `ssl`, or `sasl_ssl` with SASL).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// `ca_file = "ca.pem"`: the CA certificates (PEM) that sign the brokers' certificates.
    /// Default: the system's trust store (what managed services need).
    pub ca_file: Option<Spanned<PathBuf>>,
    /// `cert_file = "client.pem"`: this client's certificate (PEM), for mutual TLS.
    pub cert_file: Option<Spanned<PathBuf>>,
    /// `key_file = "client.key"`: the private key of `cert_file` (PEM).
    pub key_file: Option<Spanned<PathBuf>>,
    /// `key_password_env = "NAME"`: the environment variable holding `key_file`'s password.
    pub key_password_env: Option<Spanned<String>>,
    /// `key_password_file = "path"`: the file holding `key_file`'s password.
    pub key_password_file: Option<Spanned<PathBuf>>,
    /// `verify_hostname = true`: check that the broker's certificate names the host
    /// connected to. Turn off only for brokers addressed by a name their certificate lacks.
    #[serde(default = "default_true")]
    pub verify_hostname: bool,
}

/// `[broker.kafka.sasl]`: authenticate with SASL.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// `mechanism = "SCRAM-SHA-512"`.
    pub mechanism: Spanned<SaslMechanism>,
    /// `username = "plexus"` (PLAIN and SCRAM).
    pub username: Option<Spanned<String>>,
    /// `password_env = "NAME"`: the environment variable holding the password.
    pub password_env: Option<Spanned<String>>,
    /// `password_file = "path"`: the file holding the password (one trailing newline is
    /// dropped).
    pub password_file: Option<Spanned<PathBuf>>,
    /// `token_file = "path"` (OAUTHBEARER): the file holding a JWT that something else keeps
    /// fresh (a sidecar, a Kubernetes projected token); read again whenever librdkafka
    /// needs a new token.
    pub token_file: Option<Spanned<PathBuf>>,
}

/// The SASL mechanisms librdkafka is built with here (GSSAPI/Kerberos is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    /// Username and password sent as they are (use it over TLS only).
    #[serde(rename = "PLAIN")]
    Plain,
    /// Salted challenge-response, SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response, SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    /// Bearer tokens: a JWT read from `token_file`, or whatever `sasl.oauthbearer.*` in
    /// `[broker.kafka.properties]` configures.
    #[serde(rename = "OAUTHBEARER")]
    OAuthBearer,
}

impl SaslMechanism {
    fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

/// What the tables come to in librdkafka's terms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KafkaSecurity {
    /// Plain properties (`security.protocol`, file locations, the SASL mechanism, ...).
    pub properties: BTreeMap<String, String>,
    /// Properties whose values are secrets.
    pub secrets: BTreeMap<String, Secret>,
    /// OAUTHBEARER: the file the token is read from.
    pub oauth_token_file: Option<PathBuf>,
}

/// librdkafka properties the tables own: setting one in `[broker.kafka.properties]` as well would
/// leave two answers to one question.
const OWNED_BY_TLS: &[&str] = &[
    "security.protocol",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.endpoint.identification.algorithm",
];
const OWNED_BY_SASL: &[&str] = &[
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
];

fn default_true() -> bool {
    true
}

/// Checks the security tables of `broker` and reads their files and secrets; paths are
/// relative to `base_dir`. Every problem is reported, located in the file.
pub(super) fn resolve(
    broker: &KafkaConfig,
    base_dir: &Path,
    at: &Locator<'_>,
) -> Result<KafkaSecurity, Vec<ConfigError>> {
    let mut resolver = Resolver {
        base_dir,
        at,
        errors: Vec::new(),
        security: KafkaSecurity::default(),
    };
    resolver.check_properties(broker);
    if let Some(tls) = &broker.tls {
        resolver.tls(tls.get_ref());
    }
    if let Some(sasl) = &broker.sasl {
        resolver.sasl(sasl.get_ref());
    }
    let protocol = match (broker.tls.is_some(), broker.sasl.is_some()) {
        (false, false) => None,
        (true, false) => Some("ssl"),
        (false, true) => Some("sasl_plaintext"),
        (true, true) => Some("sasl_ssl"),
    };
    if let Some(protocol) = protocol {
        resolver.set("security.protocol", protocol.to_owned());
    }
    // The secrets the tables set themselves, whether or not they could be read.
    let mut taken = Vec::new();
    if broker.tls.is_some() {
        taken.push("ssl.key.password");
    }
    if broker.sasl.is_some() {
        taken.push("sasl.password");
    }
    for (key, source) in &broker.secrets {
        let name = key.get_ref().as_str();
        if taken.contains(&name) || resolver.security.properties.contains_key(name) {
            resolver.error(
                key.span(),
                format!("`{name}` is already set by `[broker.kafka.tls]` or `[broker.kafka.sasl]`"),
            );
            continue;
        }
        resolver.secret_property(key, source);
    }
    if resolver.errors.is_empty() {
        Ok(resolver.security)
    } else {
        resolver.errors.sort_by_key(|e| (e.line, e.column));
        Err(resolver.errors)
    }
}

struct Resolver<'a> {
    base_dir: &'a Path,
    at: &'a Locator<'a>,
    errors: Vec<ConfigError>,
    security: KafkaSecurity,
}

impl Resolver<'_> {
    fn error(&mut self, span: std::ops::Range<usize>, message: String) {
        self.errors.push(self.at.error(Some(span), message));
    }

    fn set(&mut self, key: &str, value: String) {
        self.security.properties.insert(key.to_owned(), value);
    }

    fn path(&self, path: &Path) -> PathBuf {
        if path.is_relative() {
            self.base_dir.join(path)
        } else {
            path.to_path_buf()
        }
    }

    /// `[broker.kafka.properties]` may hold neither secrets nor what the tables set.
    fn check_properties(&mut self, broker: &KafkaConfig) {
        for key in broker.properties.keys() {
            let name = key.get_ref().as_str();
            if is_secret_property(name) {
                self.error(
                    key.span(),
                    format!(
                        "`{name}` holds a secret, which does not belong in the config file: read it from the environment or a file with `[broker.kafka.secrets]` \"{name}\" = {{ env = \"NAME\" }} (or `password_env` in `[broker.kafka.sasl]`, `key_password_env` in `[broker.kafka.tls]`)"
                    ),
                );
                continue;
            }
            for (table, present, owned) in [
                ("tls", broker.tls.is_some(), OWNED_BY_TLS),
                ("sasl", broker.sasl.is_some(), OWNED_BY_SASL),
            ] {
                if present && owned.contains(&name) {
                    self.error(
                        key.span(),
                        format!("`{name}` is set by `[broker.kafka.{table}]`; remove it from `[broker.kafka.properties]`"),
                    );
                    break;
                }
            }
        }
    }

    fn tls(&mut self, tls: &TlsConfig) {
        for (property, file) in [
            ("ssl.ca.location", &tls.ca_file),
            ("ssl.certificate.location", &tls.cert_file),
            ("ssl.key.location", &tls.key_file),
        ] {
            if let Some(file) = file {
                let path = self.path(file.get_ref());
                if let Err(error) = std::fs::File::open(&path) {
                    self.error(
                        file.span(),
                        format!("cannot read `{}`: {error}", path.display()),
                    );
                }
                self.set(property, path.display().to_string());
            }
        }
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            let span = tls
                .cert_file
                .as_ref()
                .map(Spanned::span)
                .or_else(|| tls.key_file.as_ref().map(Spanned::span))
                .unwrap_or(0..0);
            self.error(
                span,
                "a client certificate needs both `cert_file` and `key_file`".to_owned(),
            );
        }
        if tls.key_file.is_none()
            && let Some(span) = tls
                .key_password_env
                .as_ref()
                .map(Spanned::span)
                .or_else(|| tls.key_password_file.as_ref().map(Spanned::span))
        {
            self.error(span, "a key password needs a `key_file`".to_owned());
        }
        if let Some(password) = self.one_secret(
            "key_password",
            tls.key_password_env.as_ref(),
            tls.key_password_file.as_ref(),
        ) {
            self.security
                .secrets
                .insert("ssl.key.password".into(), password);
        }
        let verify = if tls.verify_hostname { "https" } else { "none" };
        self.set("ssl.endpoint.identification.algorithm", verify.to_owned());
    }

    fn sasl(&mut self, sasl: &SaslConfig) {
        let mechanism = *sasl.mechanism.get_ref();
        self.set("sasl.mechanism", mechanism.name().to_owned());
        if mechanism != SaslMechanism::OAuthBearer
            && let Some(file) = &sasl.token_file
        {
            self.error(
                file.span(),
                format!("`token_file` is for OAUTHBEARER, not {}", mechanism.name()),
            );
        }
        if mechanism == SaslMechanism::OAuthBearer {
            if let Some(file) = &sasl.token_file {
                let path = self.path(file.get_ref());
                if let Some(token) = self.read_file(file.get_ref(), file.span())
                    && let Err(why) = jwt_claims(token.expose())
                {
                    self.error(file.span(), format!("`{}`: {why}", path.display()));
                }
                self.security.oauth_token_file = Some(path);
            }
            for span in [
                sasl.username.as_ref().map(Spanned::span),
                sasl.password_env.as_ref().map(Spanned::span),
                sasl.password_file.as_ref().map(Spanned::span),
            ]
            .into_iter()
            .flatten()
            {
                self.error(
                    span,
                    "OAUTHBEARER takes no username or password: give the token in `token_file`, or configure it with `sasl.oauthbearer.*` in `[broker.kafka.properties]` (client secrets in `[broker.kafka.secrets]`)".to_owned(),
                );
            }
            return;
        }
        match &sasl.username {
            Some(username) => self.set("sasl.username", username.get_ref().clone()),
            None => self.error(
                sasl.mechanism.span(),
                format!("SASL {} needs a `username`", mechanism.name()),
            ),
        }
        let password = self.one_secret(
            "password",
            sasl.password_env.as_ref(),
            sasl.password_file.as_ref(),
        );
        match password {
            Some(password) => {
                self.security
                    .secrets
                    .insert("sasl.password".into(), password);
            }
            None if sasl.password_env.is_none() && sasl.password_file.is_none() => self.error(
                sasl.mechanism.span(),
                format!(
                    "SASL {} needs a password: `password_env = \"NAME\"` or `password_file = \"path\"`",
                    mechanism.name()
                ),
            ),
            None => {}
        }
    }

    /// Reads the secret `{name}_env` or `{name}_file` names (only one may be given).
    fn one_secret(
        &mut self,
        name: &str,
        env: Option<&Spanned<String>>,
        file: Option<&Spanned<PathBuf>>,
    ) -> Option<Secret> {
        match (env, file) {
            (Some(_), Some(file)) => {
                self.error(
                    file.span(),
                    format!("give `{name}_env` or `{name}_file`, not both"),
                );
                None
            }
            (Some(env), None) => self.read_env(env.get_ref(), env.span()),
            (None, Some(file)) => self.read_file(file.get_ref(), file.span()),
            (None, None) => None,
        }
    }

    fn read_env(&mut self, name: &str, span: std::ops::Range<usize>) -> Option<Secret> {
        secret::from_env(name)
            .map_err(|why| self.error(span, why))
            .ok()
    }

    fn read_file(&mut self, path: &Path, span: std::ops::Range<usize>) -> Option<Secret> {
        secret::from_file(&self.path(path))
            .map_err(|why| self.error(span, why))
            .ok()
    }

    /// One entry of `[broker.kafka.secrets]`.
    fn secret_property(&mut self, key: &Spanned<String>, source: &Spanned<SecretSource>) {
        let name = key.get_ref();
        let secret = match source.get_ref() {
            SecretSource {
                env: Some(env),
                file: None,
            } => self.read_env(env, source.span()),
            SecretSource {
                env: None,
                file: Some(file),
            } => self.read_file(file, source.span()),
            _ => {
                self.error(
                    source.span(),
                    format!("`{name}`: give exactly one of `env = \"NAME\"` or `file = \"path\"`"),
                );
                None
            }
        };
        if let Some(secret) = secret {
            self.security.secrets.insert(name.clone(), secret);
        }
    }
}
