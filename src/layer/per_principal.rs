//! [`PerPrincipal`]: a model of its own for each principal, so that each
//! is held to its own [`Limit`](super::Limit) or
//! [`FleetLimit`](super::FleetLimit) budget.
//!
//! The limit layers count per instance (a `FleetLimit` per name), so a
//! budget per principal is an instance per principal: this keeps them,
//! made on first use by a function of the principal, and hands the same
//! one out for every later run acting for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::guard::Principal;
use crate::model::SharedModel;

type Make = dyn Fn(&Principal) -> SharedModel + Send + Sync;

/// One model per principal, made by a function on first use.
///
/// ```
/// use std::sync::Arc;
/// use statewise::guard::Principal;
/// use statewise::layer::{Limit, Limits, PerPrincipal};
/// use statewise::model::{ScriptedModel, SharedModel};
///
/// let base: SharedModel = Arc::new(ScriptedModel::new());
/// let anonymous = Arc::clone(&base);
/// let models = PerPrincipal::new(anonymous, move |_who: &Principal| -> SharedModel {
///     let daily = Limits { requests_per_day: Some(1_000), ..Limits::default() };
///     Arc::new(Limit::new(Arc::clone(&base), daily))
/// });
/// let alice = Principal::new("alice");
/// assert!(Arc::ptr_eq(&models.model(Some(&alice)), &models.model(Some(&alice))));
/// ```
#[derive(Clone)]
pub struct PerPrincipal {
    make: Arc<Make>,
    /// The model of runs acting for no one.
    anonymous: SharedModel,
    models: Arc<Mutex<HashMap<String, SharedModel>>>,
}

impl std::fmt::Debug for PerPrincipal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self
            .models
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len();
        f.debug_struct("PerPrincipal")
            .field("principals", &count)
            .finish_non_exhaustive()
    }
}

impl PerPrincipal {
    /// Runs acting for no one use `anonymous`; each principal the model
    /// `make` returns for it.
    pub fn new(
        anonymous: SharedModel,
        make: impl Fn(&Principal) -> SharedModel + Send + Sync + 'static,
    ) -> Self {
        PerPrincipal {
            make: Arc::new(make),
            anonymous,
            models: Arc::default(),
        }
    }

    /// The model for `principal` (the same one every time).
    pub fn model(&self, principal: Option<&Principal>) -> SharedModel {
        let Some(principal) = principal else {
            return Arc::clone(&self.anonymous);
        };
        // Only lookups and inserts happen under the lock.
        let mut models = self
            .models
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(
            models
                .entry(principal.id.clone())
                .or_insert_with(|| (self.make)(principal)),
        )
    }
}
