//! The guide: statewise from the first state to a fleet, one chapter per
//! module. Every code block here is a doctest, so the guide compiles and
//! runs in CI as the library changes.
//!
//! 1. [`concepts`]: the env, states, the machine and its events.
//! 2. [`custom_state`]: a state of your own beside the stock ones.
//! 3. [`testing`]: transitions as plain functions, a scripted model, no
//!    network.
//! 4. [`tools`]: a tool from a function, a closure or a type.
//! 5. [`models`]: providers, layers, and several models as one.
//! 6. [`graphs`]: forks, and pauses for a person.
//!
//! The README covers the rest for now (typed outputs,
//! memory, scaling out, the web server, observability), and each example's
//! first lines say what it shows and how to run it.

pub mod concepts;
pub mod custom_state;
pub mod graphs;
pub mod models;
pub mod testing;
pub mod tools;
