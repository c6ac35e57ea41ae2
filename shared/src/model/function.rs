//! The functions imagehook deploys, one Lambda each.

/// The HTTP functions imagehook deploys, one Lambda each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Push,
    Delete,
    Quarantine,
}

impl Function {
    pub const ALL: &'static [Function] = &[Function::Push, Function::Delete, Function::Quarantine];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|f| f.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Delete => "delete",
            Self::Quarantine => "quarantine",
        }
    }

    pub fn route(self) -> &'static str {
        match self {
            Self::Push => "/push",
            Self::Delete => "/delete",
            Self::Quarantine => "/quarantine",
        }
    }
}
