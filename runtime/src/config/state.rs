//! `[state]`: where plugin state lives (ADR 14).

use super::error::{ConfigError, Locator};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Which backend holds plugin state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackendKind {
    /// On disk, in a redb file: survives restarts and SIGKILL; one process.
    #[default]
    Local,
    /// In a Redis server: shared by every process of a consumer group.
    Redis,
    /// In this process's memory: lost when it ends.
    Memory,
}

/// `[state]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `backend = "local"` (the default), `"redis"` or `"memory"`.
    #[serde(default = "default_backend")]
    pub backend: Spanned<StateBackendKind>,
    /// `path = "state/shop.redb"`: local only; the database file (default:
    /// `.plexus/NAME.state.redb` beside the config file `NAME.toml`).
    pub path: Option<Spanned<PathBuf>>,
    /// `url = "redis://127.0.0.1:6379/0"`: redis only, required there.
    pub url: Option<Spanned<String>>,
    /// `prefix = "plexus"`: redis only; every key Plexus writes starts with `PREFIX:`, so
    /// several deployments can share one server.
    pub prefix: Option<Spanned<String>>,
    /// The database file of the local backend, resolved.
    #[serde(skip)]
    pub local_path: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backend: default_backend(),
            path: None,
            url: None,
            prefix: None,
            local_path: PathBuf::new(),
        }
    }
}

fn default_backend() -> Spanned<StateBackendKind> {
    Spanned::new(0..0, StateBackendKind::Local)
}

/// The default redis key prefix.
pub const DEFAULT_PREFIX: &str = "plexus";

impl StateConfig {
    /// The redis key prefix.
    pub fn prefix(&self) -> &str {
        self.prefix.as_ref().map_or(DEFAULT_PREFIX, |p| p.get_ref())
    }

    /// Settings given for another backend than the one chosen.
    pub(super) fn check(&self, at: &Locator<'_>, errors: &mut Vec<ConfigError>) {
        let kind = *self.backend.get_ref();
        let name = format!("{kind:?}").to_lowercase();
        let mut misplaced = |span: std::ops::Range<usize>, key: &str, belongs: &str| {
            errors.push(at.error(
                Some(span),
                format!(
                    "state.{key} is a setting of the {belongs} backend, but backend is \"{name}\""
                ),
            ));
        };
        if let Some(path) = &self.path
            && kind != StateBackendKind::Local
        {
            misplaced(path.span(), "path", "local");
        }
        for (key, value) in [("url", &self.url), ("prefix", &self.prefix)] {
            if let Some(value) = value
                && kind != StateBackendKind::Redis
            {
                misplaced(value.span(), key, "redis");
            }
        }
        if kind == StateBackendKind::Redis {
            match &self.url {
                None => errors.push(at.error(
                    Some(self.backend.span()),
                    "the redis state backend needs state.url, e.g. url = \"redis://127.0.0.1:6379/0\"",
                )),
                Some(url) if !url.get_ref().starts_with("redis://") => errors.push(at.error(
                    Some(url.span()),
                    format!("state.url must start with redis://, found `{}`", url.get_ref()),
                )),
                Some(_) => {}
            }
        }
    }

    /// Resolves the local database file against the config file `file` in `base`.
    pub(super) fn resolve(&mut self, base: &Path, file: &str) {
        self.local_path = match &self.path {
            Some(path) => base.join(path.get_ref()),
            None => {
                let stem = Path::new(file)
                    .file_stem()
                    .map_or("plexus".into(), |s| s.to_string_lossy().into_owned());
                base.join(".plexus").join(format!("{stem}.state.redb"))
            }
        };
    }
}
