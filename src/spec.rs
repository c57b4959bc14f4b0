//! Choosing models by string (`openai:gpt-4o-mini`), and a registry of
//! named, configured models.
//!
//! It sits above both `model` and `layer`: a model string yields a
//! provider wrapped in the default reliability stack, so it names both,
//! and neither names it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use crate::layer::{Breakers, Priced};
#[cfg(feature = "http")]
use crate::model::{Anthropic, OpenAi};
use crate::model::{ModelError, Price, PriceTable, ScriptedModel, SharedModel};

/// What a model string names.
///
/// | string | model |
/// |---|---|
/// | `openai:gpt-4o-mini` | OpenAI, key and base URL from `OPENAI_*` |
/// | `openai:qwen2.5@http://127.0.0.1:8080/v1` | any OpenAI-compatible server |
/// | `anthropic:claude-sonnet-4-5` | Anthropic, key from `ANTHROPIC_API_KEY` |
/// | `anthropic:claude-sonnet-4-5@https://proxy.example` | Anthropic through another base URL |
/// | `local:PATH.gguf` | a GGUF file run in-process (feature `local`) |
/// | `scripted` | an empty [`ScriptedModel`], for tests |
///
/// ```
/// use statewise::spec::ModelSpec;
///
/// let spec: ModelSpec = "openai:llama@http://127.0.0.1:8080/v1".parse()?;
/// assert_eq!(spec, ModelSpec::OpenAi { model: "llama".into(), base_url: Some("http://127.0.0.1:8080/v1".into()) });
/// assert!("gpt-4o".parse::<ModelSpec>().is_err());
/// # Ok::<(), statewise::spec::ModelSpecError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    /// An OpenAI-compatible endpoint.
    OpenAi {
        /// The model id the endpoint knows.
        model: String,
        /// The base URL, when not OpenAI's or `OPENAI_BASE_URL`.
        base_url: Option<String>,
    },
    /// Anthropic's Messages API.
    Anthropic {
        /// The model id.
        model: String,
        /// The base URL, when not Anthropic's or `ANTHROPIC_BASE_URL`.
        base_url: Option<String>,
    },
    /// A GGUF file run in-process.
    Local {
        /// The file.
        path: PathBuf,
    },
    /// An empty scripted model.
    Scripted,
}

const ACCEPTED: &str =
    "openai:MODEL[@BASE_URL], anthropic:MODEL[@BASE_URL], local:PATH.gguf, scripted";

/// Why a model string or name gave no model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelSpecError {
    /// The string is not of any accepted form.
    #[error("model string {spec:?} is malformed; accepted forms: {ACCEPTED}")]
    Malformed {
        /// The string.
        spec: String,
    },
    /// The provider part names no provider.
    #[error("unknown provider {provider:?} in {spec:?}; accepted forms: {ACCEPTED}")]
    UnknownProvider {
        /// The provider part.
        provider: String,
        /// The whole string.
        spec: String,
    },
    /// The provider exists but is not built in or not usable here.
    #[error("provider `{provider}` is unavailable: {reason}")]
    Unavailable {
        /// The provider.
        provider: String,
        /// Why, and what to do.
        reason: String,
    },
    /// Neither a registered name nor a model string.
    #[error("no model named {name:?}; registered: {}; or give a model string ({ACCEPTED})", .registered.join(", "))]
    NotFound {
        /// The name asked for.
        name: String,
        /// The registered names.
        registered: Vec<String>,
    },
    /// The provider rejected its configuration (a missing key, a bad URL).
    #[error(transparent)]
    Config(#[from] ModelError),
}

impl FromStr for ModelSpec {
    type Err = ModelSpecError;

    fn from_str(spec: &str) -> Result<Self, ModelSpecError> {
        let spec = spec.trim();
        if spec == "scripted" {
            return Ok(ModelSpec::Scripted);
        }
        let malformed = || ModelSpecError::Malformed {
            spec: spec.to_owned(),
        };
        let (provider, rest) = spec.split_once(':').ok_or_else(malformed)?;
        if rest.trim().is_empty() {
            return Err(malformed());
        }
        // `MODEL@URL`: the URL starts at the first `@` followed by a scheme.
        let split_url = |rest: &str| -> Result<(String, Option<String>), ModelSpecError> {
            match rest.find("@http://").or_else(|| rest.find("@https://")) {
                Some(at) if at > 0 => Ok((rest[..at].to_owned(), Some(rest[at + 1..].to_owned()))),
                Some(_) => Err(malformed()),
                None => Ok((rest.to_owned(), None)),
            }
        };
        match provider {
            "openai" => {
                split_url(rest).map(|(model, base_url)| ModelSpec::OpenAi { model, base_url })
            }
            "anthropic" => {
                split_url(rest).map(|(model, base_url)| ModelSpec::Anthropic { model, base_url })
            }
            "local" => Ok(ModelSpec::Local {
                path: PathBuf::from(rest),
            }),
            _ => Err(ModelSpecError::UnknownProvider {
                provider: provider.to_owned(),
                spec: spec.to_owned(),
            }),
        }
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSpec::OpenAi {
                model,
                base_url: None,
            } => write!(f, "openai:{model}"),
            ModelSpec::OpenAi {
                model,
                base_url: Some(u),
            } => write!(f, "openai:{model}@{u}"),
            ModelSpec::Anthropic {
                model,
                base_url: None,
            } => write!(f, "anthropic:{model}"),
            ModelSpec::Anthropic {
                model,
                base_url: Some(u),
            } => write!(f, "anthropic:{model}@{u}"),
            ModelSpec::Local { path } => write!(f, "local:{}", path.display()),
            ModelSpec::Scripted => f.write_str("scripted"),
        }
    }
}

impl ModelSpec {
    /// The model id within its provider (`gpt-4o-mini`), for price lookups.
    pub fn model_id(&self) -> String {
        match self {
            ModelSpec::OpenAi { model, .. } | ModelSpec::Anthropic { model, .. } => model.clone(),
            ModelSpec::Local { path } => path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            ModelSpec::Scripted => "scripted".to_owned(),
        }
    }

    /// Builds the model, reading keys and base URLs from the environment.
    /// Network models come with the default reliability stack (retry, time
    /// limits, circuit breaker: [`default_stack`](crate::layer::default_stack)),
    /// with a circuit breaker of their own; [`build_with`](Self::build_with)
    /// shares breakers between the models built with the same [`Breakers`].
    pub fn build(&self) -> Result<SharedModel, ModelSpecError> {
        self.build_with(&Breakers::default())
    }

    /// Builds the model as [`build`](Self::build) does, its circuit breaker
    /// the one `breakers` keep for its name.
    pub fn build_with(&self, breakers: &Breakers) -> Result<SharedModel, ModelSpecError> {
        // Only network models have a breaker.
        #[cfg(not(feature = "http"))]
        let _ = breakers;
        Ok(match self {
            #[cfg(feature = "http")]
            ModelSpec::OpenAi { model, base_url } => {
                return build_openai(model, base_url, breakers)
            }
            #[cfg(feature = "http")]
            ModelSpec::Anthropic { model, base_url } => {
                return build_anthropic(model, base_url, breakers)
            }
            #[cfg(not(feature = "http"))]
            ModelSpec::OpenAi { model, .. } => return Err(without_http("openai", model)),
            #[cfg(not(feature = "http"))]
            ModelSpec::Anthropic { model, .. } => return Err(without_http("anthropic", model)),
            ModelSpec::Local { path } => return build_local(path),
            ModelSpec::Scripted => Arc::new(ScriptedModel::new()),
        })
    }
}

#[cfg(feature = "http")]
impl ModelSpec {
    /// Builds the model on its vendor's batch lane (OpenAI's or Anthropic's
    /// Batch API, at the batch price): each call becomes one request of a
    /// batch, kept in `ledger` ([`ViaBatch`](crate::layer::batch::ViaBatch));
    /// the model with the default stack makes what falls back to real time.
    pub fn build_on_batch_lane(
        &self,
        ledger: Arc<dyn crate::layer::batch::BatchLedger>,
        config: crate::layer::batch::BatchConfig,
    ) -> Result<SharedModel, ModelSpecError> {
        let breakers = Breakers::default();
        use crate::layer::batch::{AnthropicBatch, BatchVendor, OpenAiBatch, ViaBatch};
        let (realtime, vendor): (SharedModel, Arc<dyn BatchVendor>) = match self {
            ModelSpec::OpenAi { model, base_url } => {
                let mut b = OpenAi::builder(model).from_env().streaming(false);
                if let Some(url) = base_url {
                    b = b.base_url(url);
                }
                let model = b.build()?;
                let vendor = Arc::new(OpenAiBatch::new(&model));
                (crate::layer::default_stack(model, &breakers), vendor)
            }
            ModelSpec::Anthropic { model, base_url } => {
                let mut b = Anthropic::builder(model).from_env().streaming(false);
                if let Some(url) = base_url {
                    b = b.base_url(url);
                }
                let model = b.build()?;
                let vendor = Arc::new(AnthropicBatch::new(&model));
                (crate::layer::default_stack(model, &breakers), vendor)
            }
            ModelSpec::Local { .. } | ModelSpec::Scripted => {
                return Err(ModelSpecError::Unavailable {
                    provider: self.to_string(),
                    reason: "only openai: and anthropic: models have a batch lane".to_owned(),
                })
            }
        };
        Ok(Arc::new(ViaBatch::new(realtime, vendor, ledger, config)))
    }
}

#[cfg(feature = "http")]
fn build_openai(
    model: &str,
    base_url: &Option<String>,
    breakers: &Breakers,
) -> Result<SharedModel, ModelSpecError> {
    let mut b = OpenAi::builder(model).from_env();
    if let Some(url) = base_url {
        b = b.base_url(url);
    }
    Ok(crate::layer::default_stack(b.build()?, breakers))
}

#[cfg(feature = "http")]
fn build_anthropic(
    model: &str,
    base_url: &Option<String>,
    breakers: &Breakers,
) -> Result<SharedModel, ModelSpecError> {
    let mut b = Anthropic::builder(model).from_env();
    if let Some(url) = base_url {
        b = b.base_url(url);
    }
    Ok(crate::layer::default_stack(b.build()?, breakers))
}

#[cfg(not(feature = "http"))]
fn without_http(provider: &str, model: &str) -> ModelSpecError {
    ModelSpecError::Unavailable {
        provider: provider.to_owned(),
        reason: format!(
            "cannot call {model}: statewise was built without the `http` feature (build with --features http)"
        ),
    }
}

#[cfg(feature = "local")]
fn build_local(path: &std::path::Path) -> Result<SharedModel, ModelSpecError> {
    Ok(Arc::new(crate::model::LocalModel::load(path)?))
}

#[cfg(not(feature = "local"))]
fn build_local(path: &std::path::Path) -> Result<SharedModel, ModelSpecError> {
    Err(ModelSpecError::Unavailable {
        provider: "local".to_owned(),
        reason: format!(
            "cannot run {}: statewise was built without the `local` feature (build with --features local)",
            path.display()
        ),
    })
}

/// Builds the model a string names (see [`ModelSpec`]).
pub fn from_spec(spec: &str) -> Result<SharedModel, ModelSpecError> {
    spec.parse::<ModelSpec>()?.build()
}

/// Configured models by name, so one machine can give Reasoning a large
/// model and Answer a small one, and a price table applied to the models
/// built from strings.
///
/// ```
/// use std::sync::Arc;
/// use statewise::model::{ScriptedModel, Price, PriceTable};
/// use statewise::spec::ModelRegistry;
///
/// let registry = ModelRegistry::new()
///     .with("small", Arc::new(ScriptedModel::new().named("tiny")))
///     .with_prices(PriceTable::new().with("gpt-4o-mini", Price::per_million(0.15, 0.60)));
/// assert_eq!(registry.resolve("small")?.name(), "tiny");
/// assert!(registry.resolve("large").is_err());
/// # Ok::<(), statewise::spec::ModelSpecError>(())
/// ```
#[derive(Clone, Default)]
pub struct ModelRegistry {
    models: BTreeMap<String, SharedModel>,
    prices: PriceTable,
    /// The circuit breakers of the models it builds from strings.
    breakers: Breakers,
}

impl fmt::Debug for ModelRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.models.iter().map(|(k, m)| (k, m.name())))
            .finish()
    }
}

impl ModelRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `model` as `name`.
    pub fn with(mut self, name: impl Into<String>, model: SharedModel) -> Self {
        self.insert(name, model);
        self
    }

    /// Registers `model` as `name`, returning the model it replaces.
    pub fn insert(&mut self, name: impl Into<String>, model: SharedModel) -> Option<SharedModel> {
        self.models.insert(name.into(), model)
    }

    /// Sets the prices applied to models built from strings by [`resolve`](Self::resolve).
    pub fn with_prices(mut self, prices: PriceTable) -> Self {
        self.prices = prices;
        self
    }

    /// Gives the models built from strings the circuit breakers `breakers`
    /// keep (by default, the registry keeps its own: models it builds with
    /// the same name share one).
    pub fn with_breakers(mut self, breakers: Breakers) -> Self {
        self.breakers = breakers;
        self
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }

    /// The model registered as `name`; otherwise `name` read as a model
    /// string and built, priced from the table when it lists the model.
    pub fn resolve(&self, name: &str) -> Result<SharedModel, ModelSpecError> {
        if let Some(model) = self.models.get(name) {
            return Ok(Arc::clone(model));
        }
        let spec = match name.parse::<ModelSpec>() {
            Ok(spec) => spec,
            Err(ModelSpecError::Malformed { .. }) => {
                return Err(ModelSpecError::NotFound {
                    name: name.to_owned(),
                    registered: self.models.keys().cloned().collect(),
                })
            }
            Err(e) => return Err(e),
        };
        let model = spec.build_with(&self.breakers)?;
        Ok(match self.prices.get(&spec.model_id()) {
            Some(price) => Arc::new(Priced::new(model, price)),
            None => model,
        })
    }

    /// The price the table gives `model_id`.
    pub fn price(&self, model_id: &str) -> Option<Price> {
        self.prices.get(model_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let p = |s: &str| s.parse::<ModelSpec>().unwrap();
        assert_eq!(
            p("openai:gpt-4o-mini"),
            ModelSpec::OpenAi {
                model: "gpt-4o-mini".into(),
                base_url: None
            }
        );
        assert_eq!(
            p("anthropic:claude-sonnet-4-5").to_string(),
            "anthropic:claude-sonnet-4-5"
        );
        assert_eq!(
            p("local:/m/a.gguf"),
            ModelSpec::Local {
                path: "/m/a.gguf".into()
            }
        );
        assert_eq!(p("scripted"), ModelSpec::Scripted);
        // A model id may hold `@` or `:` itself.
        assert_eq!(
            p("openai:org/model:v1@2@https://h:1/v1"),
            ModelSpec::OpenAi {
                model: "org/model:v1@2".into(),
                base_url: Some("https://h:1/v1".into())
            }
        );
    }

    #[test]
    fn errors_say_what_is_accepted() {
        for bad in ["gpt-4o", "openai:", "openai:@http://x", ""] {
            let e = bad.parse::<ModelSpec>().unwrap_err();
            assert!(matches!(e, ModelSpecError::Malformed { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("openai:MODEL[@BASE_URL]"));
        }
        let e = "gemini:pro".parse::<ModelSpec>().unwrap_err();
        assert!(e.to_string().contains("unknown provider \"gemini\""), "{e}");
    }

    #[cfg(not(feature = "local"))]
    #[test]
    fn local_without_the_feature_says_how_to_get_it() {
        let Err(e) = from_spec("local:model.gguf") else {
            panic!()
        };
        assert!(e.to_string().contains("--features local"), "{e}");
    }

    #[cfg(not(feature = "http"))]
    #[test]
    fn network_providers_without_the_feature_are_unavailable() {
        for spec in ["openai:gpt-4o-mini", "anthropic:claude-sonnet-4-5"] {
            match from_spec(spec) {
                Err(ModelSpecError::Unavailable { provider, reason }) => {
                    assert!(spec.starts_with(&provider), "{provider}");
                    assert!(reason.contains("--features http"), "{reason}");
                }
                other => panic!("{spec}: {:?}", other.map(|m| m.name().to_owned())),
            }
        }
    }
}
