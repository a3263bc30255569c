//! Errors.

use crate::model::{LogicalOp, Operand, Operator};

/// Why a policy, request or contract was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A value with the wrong syntax.
    #[error("{value} is not a valid {what}")]
    BadValue {
        /// What was expected.
        what: &'static str,
        /// The refused value, quoted and shortened.
        value: String,
    },
    /// An operator the operand does not support.
    #[error("operator {operator} cannot be used with operand {operand}")]
    BadOperator {
        /// The operand.
        operand: Operand,
        /// The operator.
        operator: Operator,
    },
    /// A value of the wrong type for the operand.
    #[error("operand {operand} cannot be compared with {value}")]
    BadValueType {
        /// The operand.
        operand: Operand,
        /// The value.
        value: String,
    },
    /// A list right operand that is wrong.
    #[error("the value list of operand {operand} {reason}")]
    BadList {
        /// The operand.
        operand: Operand,
        /// Why.
        reason: String,
    },
    /// A logical constraint with fewer than two parts (or too many).
    #[error("logical constraint {op} must combine 2 to 64 constraints, not {count}")]
    BadLogical {
        /// The connective.
        op: LogicalOp,
        /// How many parts it had.
        count: usize,
    },
    /// Nesting deeper than the limit.
    #[error("constraints nest deeper than {limit}")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// Too many of something.
    #[error("policy has more {what} than the limit of {limit}")]
    TooLarge {
        /// Of what.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// An obligation without duties.
    #[error("an obligation must name at least one duty")]
    EmptyObligation,
    /// A prohibition with duties (ODRL remedies are not supported).
    #[error("a prohibition cannot carry duties")]
    ProhibitionDuty,
    /// Text syntax error, with its position.
    #[error("{file}:{line}:{col}: {message}")]
    Syntax {
        /// The file name (or `<input>`).
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        col: usize,
        /// What is wrong.
        message: String,
    },
    /// ODRL JSON that cannot be read.
    #[error("odrl: {0}")]
    Odrl(String),
    /// A request (JSON) that cannot be read.
    #[error("request: {0}")]
    Request(String),
    /// Canonical CBOR refused.
    #[error("policy cbor: {0}")]
    Cbor(#[from] tds_core::cbor::CborError),
    /// Containment analysis gave up.
    #[error("containment: {0}")]
    TooComplex(String),
}
