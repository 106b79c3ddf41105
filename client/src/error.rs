//! What can go wrong asking the platform: it is unreachable, it refused, or it answered
//! something undecodable.

use neo_protocol::{EntityRef, pb};

/// The platform refused or could not be reached.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// NATS or the platform did not answer.
    #[error("the platform is unreachable: {0}")]
    Unavailable(String),
    /// The entity refused the command (or the query).
    #[error("{entity}: {rule}: {message}")]
    Refused {
        /// The entity.
        entity: String,
        /// The rule that refused.
        rule: String,
        /// The error code.
        code: pb::ErrorCode,
        /// The command's field at fault, if one is (empty otherwise).
        field: String,
        /// Why.
        message: String,
    },
    /// The platform answered something undecodable.
    #[error("undecodable platform reply: {0}")]
    Undecodable(String),
}

impl ClientError {
    /// The refusal of `entity` the platform sent.
    pub fn refused(entity: &EntityRef, e: pb::CommandError) -> Self {
        Self::Refused {
            entity: entity.to_string(),
            rule: e.rule,
            code: pb::ErrorCode::try_from(e.code).unwrap_or(pb::ErrorCode::Internal),
            field: e.field,
            message: e.message,
        }
    }

    /// The refusing rule, if the entity refused.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Self::Refused { rule, .. } => Some(rule),
            _ => None,
        }
    }

    /// Whether retrying later may succeed (an outage or an exhausted conflict).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Refused { code, .. } => matches!(
                code,
                pb::ErrorCode::Unavailable | pb::ErrorCode::Aborted | pb::ErrorCode::Internal
            ),
            Self::Undecodable(_) => false,
        }
    }
}
