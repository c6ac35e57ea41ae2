//! The functions imagehook deploys, one Lambda each: three webhooks, the ECS deployment
//! outcomes (EventBridge) and the read-only images API.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Push,
    Delete,
    Quarantine,
    /// ECS deployment state changes, from EventBridge.
    Outcomes,
    /// GET /images/{repository}, behind IAM authorization.
    Images,
}

impl Function {
    pub const ALL: &'static [Function] = &[
        Function::Push,
        Function::Delete,
        Function::Quarantine,
        Function::Outcomes,
        Function::Images,
    ];

    /// The functions registries and scanners deliver webhooks to.
    pub const WEBHOOKS: &'static [Function] =
        &[Function::Push, Function::Delete, Function::Quarantine];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|f| f.name() == s)
    }

    /// Its name, as in `imagehook-<name>` and `imagehook invoke <name>`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Delete => "delete",
            Self::Quarantine => "quarantine",
            Self::Outcomes => "outcomes",
            Self::Images => "images",
        }
    }

    /// Whether registries and scanners post to it (with a webhook secret).
    pub fn is_webhook(self) -> bool {
        Self::WEBHOOKS.contains(&self)
    }

    /// Its HTTP route; the outcomes function has none (EventBridge invokes it).
    pub fn route(self) -> Option<&'static str> {
        match self {
            Self::Push => Some("/push"),
            Self::Delete => Some("/delete"),
            Self::Quarantine => Some("/quarantine"),
            Self::Outcomes => None,
            Self::Images => Some("/images/{repository}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_parses_from_its_name() {
        for f in Function::ALL {
            assert_eq!(Function::parse(f.name()), Some(*f));
        }
        assert_eq!(Function::parse("replay"), None);
        assert!(Function::WEBHOOKS.iter().all(|f| f.is_webhook()));
        assert!(!Function::Outcomes.is_webhook() && Function::Outcomes.route().is_none());
    }
}
