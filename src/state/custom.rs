//! A state's own events: one typed channel that stock and custom states
//! share ([`Emit::Custom`](super::Emit::Custom)).
//!
//! The key design decision: [`Emit`](super::Emit) holds what every consumer
//! must understand (answer pieces, tool calls, model calls); anything a
//! particular state wants to tell is a [`StateEvent`], carried by name with
//! a JSON value. A consumer that knows the type decodes it
//! ([`Custom::decode`]); one that does not passes it on (the AG-UI
//! translator sends it as a `CUSTOM` event, the verbose console prints it),
//! so a custom state's events travel exactly as the stock states' do.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::action::PartialAction;
use crate::env::Action;

/// An event type a state emits on the shared channel, under its [`NAME`].
///
/// [`NAME`]: StateEvent::NAME
///
/// ```
/// use statewise::state::{Custom, StateEvent};
///
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Progress { done: u32, of: u32 }
/// impl StateEvent for Progress {
///     const NAME: &'static str = "progress";
/// }
///
/// let event = Custom::new(&Progress { done: 1, of: 3 });
/// assert_eq!(event.decode::<Progress>(), Some(Progress { done: 1, of: 3 }));
/// ```
pub trait StateEvent: Serialize + DeserializeOwned {
    /// What the event is called on the wire (AG-UI `CUSTOM` events' `name`,
    /// traces); `snake_case` by convention.
    const NAME: &'static str;
}

/// A state's own event: its name and its value as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Custom {
    /// The event type's [`StateEvent::NAME`].
    pub name: String,
    /// The event, serialized.
    pub value: Value,
}

impl Custom {
    /// `event` under its type's name. A value JSON cannot hold (a map
    /// with non-string keys) travels as the serializer's message, a string.
    pub fn new<E: StateEvent>(event: &E) -> Self {
        let value = serde_json::to_value(event)
            .unwrap_or_else(|e| Value::String(format!("{} could not be serialized: {e}", E::NAME)));
        Custom {
            name: E::NAME.to_owned(),
            value,
        }
    }

    /// Whether this is an `E`.
    pub fn is<E: StateEvent>(&self) -> bool {
        self.name == E::NAME
    }

    /// The event as an `E`: `None` when it is another type, or when its
    /// value does not read as an `E` (an event from another version).
    pub fn decode<E: StateEvent>(&self) -> Option<E> {
        match self.is::<E>() {
            true => E::deserialize(&self.value).ok(),
            false => None,
        }
    }
}

/// The action a state decided on ([`Env::action`](crate::Env::action)):
/// traces record it as the step's action, and the AG-UI translator
/// announces its tool calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ActionParsed(pub Action);

impl StateEvent for ActionParsed {
    const NAME: &'static str = "action_parsed";
}

/// The JSON a state recovered from the model's text before reading it as
/// its action ([`Parsed::repaired`](crate::action::Parsed)): traces record
/// it as the step's `repaired`, so the text is repaired once, by the state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ActionRepaired(pub serde_json::Value);

impl StateEvent for ActionRepaired {
    const NAME: &'static str = "action_repaired";
}

/// What is known of an action while its text still streams
/// ([`PartialAction`]); never retracted.
/// A guardrail tripped ([`Trip`](crate::guard::Trip)): the machine sends
/// it as the event of the state running, stopping or not.
impl StateEvent for crate::guard::Trip {
    const NAME: &'static str = "guardrail_tripped";
}

impl StateEvent for PartialAction {
    const NAME: &'static str = "partial_action";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_decodes_only_as_its_own_type() {
        let event = Custom::new(&ActionParsed(Action::FinalAnswer("4".into())));
        assert_eq!(event.name, "action_parsed");
        assert_eq!(
            event.decode::<ActionParsed>(),
            Some(ActionParsed(Action::FinalAnswer("4".into())))
        );
        assert!(!event.is::<PartialAction>());
        assert_eq!(event.decode::<PartialAction>(), None);
    }

    #[test]
    fn a_value_of_another_shape_does_not_decode() {
        let event = Custom {
            name: "action_parsed".into(),
            value: serde_json::json!(42),
        };
        assert_eq!(event.decode::<ActionParsed>(), None);
    }
}
