/// The names of every queue and exchange of one deployment. All carry the namespace prefix so
/// that several deployments (or several tests) can share one broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    namespace: String,
}

impl Topology {
    /// The names under `namespace`, e.g. `"sagaflow"`.
    pub fn new(namespace: impl Into<String>) -> Result<Self, InvalidName> {
        let namespace = namespace.into();
        validate_name(&namespace)?;
        Ok(Topology { namespace })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Where clients publish [`crate::StartSaga`] messages.
    pub fn start_queue(&self) -> String {
        format!("{}.start", self.namespace)
    }

    /// Where activity services publish [`crate::ActivityResult`] messages.
    pub fn results_queue(&self) -> String {
        format!("{}.results", self.namespace)
    }

    /// Where activity services publish [`crate::ActivityHeartbeat`]s of long attempts.
    pub fn heartbeats_queue(&self) -> String {
        format!("{}.heartbeats", self.namespace)
    }

    /// Where clients publish [`crate::SignalSaga`] messages.
    pub fn signals_queue(&self) -> String {
        format!("{}.signals", self.namespace)
    }

    /// Where operators publish [`crate::SagaControl`] messages.
    pub fn control_queue(&self) -> String {
        format!("{}.control", self.namespace)
    }

    /// The fanout exchange of [`crate::ActivityCancel`] messages; each activity service
    /// replica binds a queue of its own.
    pub fn activity_cancels_exchange(&self) -> String {
        format!("{}.activity-cancels", self.namespace)
    }

    /// Where the orchestrator publishes [`crate::ActivityCommand`]s for `activity`.
    pub fn activity_queue(&self, activity: &str) -> String {
        format!("{}.activity.{activity}", self.namespace)
    }

    /// The exchange every queue dead-letters to (fanout).
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dead-letter", self.namespace)
    }

    /// The orchestrator's copy of every dead letter, bound to the dead-letter exchange: it
    /// notices activity commands the broker dead-lettered and fails their attempts.
    pub fn dead_letter_watch_queue(&self) -> String {
        format!("{}.dead-letter.orchestrator", self.namespace)
    }

    /// The queue that keeps dead-lettered messages for people to inspect.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead-letter", self.namespace)
    }
}

/// A namespace, saga type or activity name that cannot be used in queue names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidName(pub String);

impl std::fmt::Display for InvalidName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid name {:?}: use 1 to 100 characters from A-Z a-z 0-9 _ - .",
            self.0
        )
    }
}

impl std::error::Error for InvalidName {}

/// Checks that `name` is 1–100 characters of `[A-Za-z0-9_.-]`.
pub fn validate_name(name: &str) -> Result<(), InvalidName> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(InvalidName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_namespace() {
        let t = Topology::new("shop").unwrap();
        assert_eq!(t.start_queue(), "shop.start");
        assert_eq!(
            t.activity_queue("ChargeCustomer"),
            "shop.activity.ChargeCustomer"
        );
    }

    #[test]
    fn names_that_break_queue_names_are_refused() {
        assert!(validate_name("").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name(&"x".repeat(101)).is_err());
        assert!(validate_name("Charge-Customer_2.v1").is_ok());
    }
}
