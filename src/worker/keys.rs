//! The Redis keys of a run queue, all under one prefix.

/// The consumer group every worker reads the queue in.
pub(crate) const GROUP: &str = "workers";

/// Names the keys of the queue under `prefix`.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// The stream of submitted runs.
    pub(crate) fn queue(&self) -> String {
        format!("{}:queue", self.prefix)
    }

    /// Run id → its queue entry id, so a run is queued once.
    pub(crate) fn submitted(&self) -> String {
        format!("{}:submitted", self.prefix)
    }

    /// Run id → its outcome (JSON), written once.
    pub(crate) fn outcomes(&self) -> String {
        format!("{}:outcomes", self.prefix)
    }

    /// A stream with one entry per recorded outcome, in order.
    pub(crate) fn outcome_log(&self) -> String {
        format!("{}:outcome-log", self.prefix)
    }

    /// The dead-letter stream: runs given up after too many deliveries.
    pub(crate) fn dead(&self) -> String {
        format!("{}:dead", self.prefix)
    }

    /// A run's events, as its workers streamed them.
    pub(crate) fn events(&self, run_id: &str) -> String {
        format!("{}:run:{run_id}:events", self.prefix)
    }

    /// The last error a delivery of the run ended with.
    pub(crate) fn error(&self, run_id: &str) -> String {
        format!("{}:run:{run_id}:error", self.prefix)
    }

    /// The child runs a parked parent still waits for (a set).
    pub(crate) fn waiting(&self, parent: &str) -> String {
        format!("{}:run:{parent}:children", self.prefix)
    }

    /// Parent run id → its machine, for parents parked until their child
    /// runs end.
    pub(crate) fn parked(&self) -> String {
        format!("{}:parked", self.prefix)
    }
}
