//! Layered configuration: JSON file → defaults → `--set key.path=value` → typed struct.
//!
//! Every component of ebda owns a `serde` config with `#[serde(default,
//! deny_unknown_fields)]`. An experiment nests them, and this crate resolves
//! one from the layers a user gives, in order:
//!
//! 1. an optional JSON file (syntax errors name the file, line and column);
//! 2. the defaults of every field the file leaves out (from `Default`);
//! 3. `--set path.to.key=value` overrides, applied to the resolved tree. The
//!    value is typed by reading it as JSON (`2.5`, `true`, `[64, 32]`,
//!    `"text"`, `null`); anything that is not valid JSON is taken as a string,
//!    so `--set model.critic.energy=mse` works without quotes.
//!
//! Errors carry the full key path, e.g. `model.critic.margn: unknown field
//! ...`. Semantic checks (`validate()`) stay with each component; their
//! messages follow the same `key.path: reason` form via [`ConfigError::Invalid`].
//!
//! ```
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Default, Serialize, Deserialize)]
//! #[serde(default, deny_unknown_fields)]
//! struct Critic { margin: f64, hidden: Vec<usize> }
//!
//! #[derive(Debug, Default, Serialize, Deserialize)]
//! #[serde(default, deny_unknown_fields)]
//! struct Experiment { critic: Critic, seed: u64 }
//!
//! let sets = vec!["critic.margin=2.5".to_string(), "critic.hidden=[64,32]".to_string()];
//! let cfg: Experiment = ebda_config::resolve(None, &sets)?;
//! assert_eq!(cfg.critic.margin, 2.5);
//! assert_eq!(cfg.critic.hidden, vec![64, 32]);
//!
//! let err = ebda_config::resolve::<Experiment>(None, &["critic.margn=1".to_string()]).unwrap_err();
//! assert!(err.to_string().starts_with("critic.margn: unknown field"));
//! # Ok::<(), ebda_config::ConfigError>(())
//! ```

#[doc(hidden)]
pub use serde as __serde;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Declares a config enum whose variants are named alternatives, each with
/// its own settings (a method, a backbone): written `"name"` for that
/// variant's defaults or `{"name": {...}}` with its settings, so a `--set
/// key=name` switches the variant and `--set key.name.field=v` sets one of
/// its fields. Errors keep their key paths (`key.name.field: ...`), an
/// unknown name lists the known ones, and a section with two names is
/// refused. Adds `NAMES`, `name()` and `named(name)`.
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
/// #[serde(default, deny_unknown_fields)]
/// pub struct Small { pub width: usize }
///
/// #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
/// #[serde(default, deny_unknown_fields)]
/// pub struct Big { pub depth: usize }
///
/// ebda_config::tagged_config! {
///     /// A model size.
///     pub enum Size {
///         "small" => Small(Small),
///         "big" => Big(Big),
///     }
/// }
///
/// let a: Size = serde_json::from_str(r#""big""#)?;
/// assert_eq!(a, Size::Big(Big::default()));
/// let b: Size = serde_json::from_str(r#"{"small": {"width": 3}}"#)?;
/// assert_eq!(serde_json::to_string(&b)?, r#"{"small":{"width":3}}"#);
/// assert_eq!((b.name(), Size::NAMES), ("small", &["small", "big"][..]));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[macro_export]
macro_rules! tagged_config {
    ($(#[$meta:meta])* $vis:vis enum $Enum:ident { $( $name:literal => $variant:ident($config:ty) ),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        $vis enum $Enum {
            $( $variant($config), )*
        }

        impl $Enum {
            /// The variants' names, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            /// The name written in configs.
            pub fn name(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => $name, )*
                }
            }

            /// The variant `name` with its default settings.
            pub fn named(name: &str) -> Option<Self> {
                match name {
                    $( $name => Some(Self::$variant(<$config as Default>::default())), )*
                    _ => None,
                }
            }
        }

        impl $crate::__serde::Serialize for $Enum {
            fn serialize<S: $crate::__serde::Serializer>(&self, s: S) -> ::core::result::Result<S::Ok, S::Error> {
                use $crate::__serde::ser::SerializeMap;
                let mut map = s.serialize_map(Some(1))?;
                match self {
                    $( Self::$variant(c) => map.serialize_entry($name, c)?, )*
                }
                map.end()
            }
        }

        impl<'de> $crate::__serde::Deserialize<'de> for $Enum {
            fn deserialize<D: $crate::__serde::Deserializer<'de>>(d: D) -> ::core::result::Result<Self, D::Error> {
                use $crate::__serde::de::{self, MapAccess, Visitor};
                struct Tagged;
                impl<'de> Visitor<'de> for Tagged {
                    type Value = $Enum;

                    fn expecting(&self, f: &mut ::core::fmt::Formatter) -> ::core::fmt::Result {
                        write!(f, "a name or a section keyed by one, one of {:?}", $Enum::NAMES)
                    }

                    fn visit_str<E: de::Error>(self, name: &str) -> ::core::result::Result<$Enum, E> {
                        $Enum::named(name).ok_or_else(|| E::unknown_variant(name, $Enum::NAMES))
                    }

                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> ::core::result::Result<$Enum, A::Error> {
                        let Some(name) = map.next_key::<String>()? else {
                            return Err(de::Error::custom(format!(
                                "empty section: expected one key, the name, one of {:?}",
                                $Enum::NAMES
                            )));
                        };
                        let value = match name.as_str() {
                            $( $name => $Enum::$variant(map.next_value()?), )*
                            other => return Err(de::Error::unknown_variant(other, $Enum::NAMES)),
                        };
                        if let Some(second) = map.next_key::<String>()? {
                            return Err(de::Error::custom(format!(
                                "one choice per section: found {name:?} and {second:?}"
                            )));
                        }
                        Ok(value)
                    }
                }
                d.deserialize_any(Tagged)
            }
        }
    };
}

/// Everything that can go wrong while resolving a config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid JSON.
    #[error("config file {path} is not valid JSON: {source}")]
    Syntax {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A `--set` argument is not of the form `key.path=value`.
    #[error("--set {arg:?}: {reason}")]
    Override { arg: String, reason: String },
    /// A key has the wrong type, is unknown, or fails a semantic check.
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    /// A semantic error at `key` (full dotted path).
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, ConfigError>;

/// Reads a JSON config file into a value tree.
pub fn read_file(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ConfigError::Syntax {
        path: path.to_path_buf(),
        source,
    })
}

/// Splits `key.path=value` and types the value (JSON if it parses, else a string).
pub fn parse_override(arg: &str) -> Result<(Vec<String>, Value)> {
    let bad = |reason: &str| ConfigError::Override {
        arg: arg.to_string(),
        reason: reason.to_string(),
    };
    let (key, raw) = arg
        .split_once('=')
        .ok_or_else(|| bad("expected key.path=value"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(bad("empty key before '='"));
    }
    let path: Vec<String> = key.split('.').map(str::to_string).collect();
    if path.iter().any(String::is_empty) {
        return Err(bad("empty segment in the key path"));
    }
    let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
    Ok((path, value))
}

/// Sets `value` at `path` inside `root`, creating objects for missing keys.
///
/// A key that the target type does not know is inserted anyway, so that
/// deserialization reports it as an unknown field with its full path.
pub fn set_path(root: &mut Value, path: &[String], value: Value) -> Result<()> {
    let mut node = root;
    for (depth, segment) in path.iter().enumerate() {
        let here = || path[..depth].join(".");
        let object = match node {
            Value::Object(map) => map,
            Value::Null => {
                *node = Value::Object(Map::new());
                node.as_object_mut().expect("just made an object")
            }
            other => {
                let key = if depth == 0 { "<root>".into() } else { here() };
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "is a {}, not a section, so it has no key {segment:?}",
                        kind_of(other)
                    ),
                ));
            }
        };
        if depth + 1 == path.len() {
            object.insert(segment.clone(), value);
            return Ok(());
        }
        node = object.entry(segment.clone()).or_insert(Value::Null);
    }
    unreachable!("parse_override never yields an empty path")
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "section",
    }
}

/// Deserializes a value tree into `T`, reporting the full key path of any error.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let key = if path == "." { "<root>".into() } else { path };
        ConfigError::invalid(key, err.into_inner().to_string())
    })
}

/// Resolves a config from an optional file and `--set` overrides (no `validate`).
///
/// The file is deserialized first, so its unknown keys are reported against
/// the file; then each override in turn is applied to the resolved tree
/// (every default explicit) and the tree deserialized again.
pub fn resolve<T>(file: Option<&Path>, overrides: &[String]) -> Result<T>
where
    T: DeserializeOwned + Serialize + Default,
{
    let base: T = match file {
        Some(path) => from_value(read_file(path)?).map_err(|err| match err {
            ConfigError::Invalid { key, reason } => {
                ConfigError::invalid(key, format!("{reason} (in {})", path.display()))
            }
            other => other,
        })?,
        None => T::default(),
    };
    if overrides.is_empty() {
        return Ok(base);
    }
    // Each override applies to the tree the previous ones resolved to, so a
    // value that a type reads in a short form (a method given by its name)
    // is a full section again before the next override reaches into it.
    let mut resolved = base;
    for arg in overrides {
        let mut tree = serde_json::to_value(&resolved)
            .map_err(|e| ConfigError::invalid("<root>", format!("cannot serialize config: {e}")))?;
        let (path, value) = parse_override(arg)?;
        set_path(&mut tree, &path, value)?;
        resolved = from_value(tree)?;
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Energy {
        Mse,
        #[default]
        Relative,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Critic {
        margin: f64,
        hidden: Vec<usize>,
        energy: Energy,
        name: Option<String>,
    }

    impl Default for Critic {
        fn default() -> Self {
            Self {
                margin: 1.0,
                hidden: vec![256],
                energy: Energy::Relative,
                name: None,
            }
        }
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Model {
        critic: Critic,
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Exp {
        model: Model,
        seed: u64,
        verbose: bool,
    }

    fn sets(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn overrides_are_typed() {
        let cfg: Exp = resolve(
            None,
            &sets(&[
                "model.critic.margin=2.5",
                "model.critic.hidden=[64, 32]",
                "model.critic.energy=mse",
                "model.critic.name=\"a=b\"",
                "seed=7",
                "verbose=true",
            ]),
        )
        .unwrap();
        assert_eq!(cfg.model.critic.margin, 2.5);
        assert_eq!(cfg.model.critic.hidden, vec![64, 32]);
        assert_eq!(cfg.model.critic.energy, Energy::Mse);
        assert_eq!(cfg.model.critic.name.as_deref(), Some("a=b"));
        assert_eq!(cfg.seed, 7);
        assert!(cfg.verbose);
    }

    #[test]
    fn unknown_key_names_full_path() {
        let err = resolve::<Exp>(None, &sets(&["model.critic.margn=1"])).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("model.critic.margn: unknown field `margn`"),
            "{msg}"
        );
        assert!(msg.contains("expected one of"), "{msg}");
    }

    #[test]
    fn wrong_type_names_full_path() {
        let err = resolve::<Exp>(None, &sets(&["model.critic.margin=abc"])).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("model.critic.margin: invalid type: string \"abc\""),
            "{msg}"
        );
        let err = resolve::<Exp>(None, &sets(&["model.critic.hidden=[1,-2]"])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("model.critic.hidden[1]: invalid value"),
            "{err}"
        );
    }

    #[test]
    fn descending_into_a_scalar_is_an_error() {
        let err = resolve::<Exp>(None, &sets(&["seed.x=1"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "seed: is a number, not a section, so it has no key \"x\""
        );
    }

    #[test]
    fn malformed_override() {
        for bad in ["margin", "=3", "model..critic=1"] {
            let err = resolve::<Exp>(None, &sets(&[bad])).unwrap_err();
            assert!(matches!(err, ConfigError::Override { .. }), "{bad}: {err}");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn file_then_defaults_then_overrides() {
        let dir = std::env::temp_dir().join(format!("ebda-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("exp.json");
        std::fs::write(
            &path,
            r#"{"seed": 3, "model": {"critic": {"margin": 4.0}}}"#,
        )
        .unwrap();
        let cfg: Exp = resolve(Some(&path), &sets(&["seed=5"])).unwrap();
        assert_eq!(cfg.seed, 5);
        assert_eq!(cfg.model.critic.margin, 4.0);
        assert_eq!(cfg.model.critic.hidden, vec![256]);

        std::fs::write(&path, r#"{"model": {"critc": {}}}"#).unwrap();
        let msg = resolve::<Exp>(Some(&path), &[]).unwrap_err().to_string();
        assert!(msg.starts_with("model.critc: unknown field"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");

        std::fs::write(&path, "{\"seed\": 3,\n  oops}").unwrap();
        let msg = resolve::<Exp>(Some(&path), &[]).unwrap_err().to_string();
        assert!(
            msg.contains("is not valid JSON") && msg.contains("line 2"),
            "{msg}"
        );

        let missing = dir.join("missing.json");
        let msg = resolve::<Exp>(Some(&missing), &[]).unwrap_err().to_string();
        assert!(msg.starts_with("cannot read config file") && msg.contains("missing.json"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
