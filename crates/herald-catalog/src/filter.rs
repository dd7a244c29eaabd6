//! Payload filters: CEL expressions compiled once (when a subscription is
//! created or changed) and evaluated against each event at fan-out.
//!
//! This module owns the filter language's rules, its limits and how an event
//! is presented to it; it does not own where filters are stored.
//!
//! # Language
//!
//! Filters are [CEL](https://cel.dev) expressions, parsed and evaluated by the
//! `cel` crate with its standard library (operators, `size`, `in`, string
//! `contains`/`startsWith`/`endsWith`, `has()`, the `all`/`exists`/
//! `exists_one`/`map`/`filter` macros, optional values `a.?b`). Regular
//! expressions (`matches`) and `timestamp`/`duration` are not built in.
//! A filter must evaluate to a boolean.
//!
//! # Variables
//!
//! - every top-level field of an object payload, by name:
//!   `amount > 1000 && customer.tier == "gold"`;
//! - `payload`: the whole payload, whatever its JSON type; use it for fields
//!   that are not CEL identifiers (`payload["first-name"]`), for fields named
//!   like the variables below, and for `has(payload.amount)`;
//! - `event_type`: the event's type name (a string);
//! - `channels`: the event's channels (a list of strings, maybe empty):
//!   `"eu" in channels`.
//!
//! `payload`, `event_type` and `channels` win over payload fields of the same
//! name, and only fields whose names are CEL identifiers
//! (`[A-Za-z_][A-Za-z0-9_]*`) and not CEL type names (`int`, `string`, ...)
//! become variables. A comprehension's own
//! variable shadows them inside it (`items.exists(amount, ...)`). JSON numbers become CEL `int` when they are integers that fit in 64
//! signed bits, `uint` when they only fit unsigned, `double` otherwise; CEL
//! compares numbers across these types, so `amount > 1000` holds for 1500,
//! 1500.5 and 1500u alike.
//!
//! # Errors at evaluation
//!
//! Evaluation never panics. A filter that cannot be evaluated for an event (a
//! missing field, a type mismatch, a non-boolean result, division by zero)
//! yields an [`EvalError`] that says why; [`crate::pattern::Subscription`]
//! treats it as "no match" and reports the reason. Guard optional fields with
//! `has(payload.field) && ...` or `payload.?field.orValue(default)`.
//!
//! # Limits (against pathological filters)
//!
//! - source at most [`MAX_FILTER_LEN`] bytes;
//! - parentheses, calls, lists and maps nest at most [`MAX_NESTING`] deep
//!   (the parser's recursion limit; evaluation recursion is bounded by it);
//! - comprehensions (`all`, `exists`, `exists_one`, `map`, `filter`) must
//!   not nest inside one another, and a comprehension's body may use only its
//!   own variable (and literals, and type names such as `int`): the body then
//!   costs at most its size times the size of one element, and the elements
//!   add up to the payload;
//! - at most [`MAX_REFERENCES`] references to variables in all, which bounds
//!   how many copies of payload values one evaluation can make (CEL has no
//!   other loops, no recursion and no variables of its own);
//! - at most [`MAX_ADDITIONS`] `+` operators, since `+` concatenates lists and
//!   strings;
//! - an expression that can only yield a non-boolean (a literal, an
//!   arithmetic operation, a list or map) is refused when compiled;
//! - payloads nested deeper than [`MAX_PAYLOAD_DEPTH`] are not evaluated;
//! - as a last line of defence, a panic inside the CEL parser or interpreter
//!   is caught and reported as [`FilterError::Internal`] or
//!   [`EvalError::Internal`] (only with the default `panic = "unwind"`).
//!
//! Together the static limits bound one evaluation's time and memory by a
//! constant times the payload size: the `cel` crate has no run-time cost
//! limit of its own, so the bound has to come from what a filter may say.
//! (The costliest filters concatenate payload lists, `items + items + ...`:
//! about `MAX_ADDITIONS²/2 + MAX_REFERENCES` copies of the payload at most.)
//!
//! Reasons quoted from the CEL crate are cut at [`MAX_MESSAGE_CHARS`].

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

use cel::common::ast::{IdedExpr, SourceInfo};
use cel::{Context, Env, ExecutionError, Value as CelValue};

use crate::truncate_chars;

mod check;
mod input;

use check::check_tree;

pub use input::EventInput;

/// Longest filter source, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;
/// Deepest nesting the parser accepts.
pub const MAX_NESTING: u16 = 32;
/// Most references to variables (payload fields, `payload`, `event_type`,
/// `channels`, a comprehension's own variable) in one filter.
pub const MAX_REFERENCES: usize = 32;
/// Most `+` operators in one filter (each may copy a payload list or string).
pub const MAX_ADDITIONS: usize = 8;
/// Deepest JSON nesting of a payload a filter is evaluated against.
pub const MAX_PAYLOAD_DEPTH: usize = 128;
/// Longest message quoted from the CEL crate, in characters.
pub const MAX_MESSAGE_CHARS: usize = 300;

/// Names the filter sees besides the payload's top-level fields.
pub const VAR_PAYLOAD: &str = "payload";
pub const VAR_EVENT_TYPE: &str = "event_type";
pub const VAR_CHANNELS: &str = "channels";

/// A place in the filter source: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Why a filter was refused when compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("filter is empty")]
    Empty,
    #[error("filter is {len} bytes long; the limit is {MAX_FILTER_LEN}")]
    TooLong { len: usize },
    /// The first syntax error; `more` counts the others the parser reported.
    #[error("filter has a syntax error at {position}: {message}")]
    Syntax {
        position: Position,
        message: String,
        more: usize,
    },
    #[error("filter nests deeper than {MAX_NESTING} levels at {position}")]
    TooDeep { position: Position },
    #[error(
        "filter nests a comprehension (all, exists, exists_one, map, filter) \
         inside another at {position}; they may not nest, so that evaluation \
         stays linear in the payload size"
    )]
    NestedComprehension { position: Position },
    #[error(
        "filter reads `{name}` inside a comprehension body at {position}; a body \
         may only use its own variable (e.g. items.all(i, i.qty > 0)), so that \
         evaluation stays linear in the payload size"
    )]
    OuterReference { name: String, position: Position },
    #[error(
        "filter has more than {MAX_ADDITIONS} '+' operators (the next at {position}); \
         each may copy a list or string from the payload"
    )]
    TooManyAdditions { position: Position },
    #[error(
        "filter refers to variables more than {MAX_REFERENCES} times (the \
         {}th at {position}); combine tests, e.g. `x in [1, 2, 3]` instead of \
         `x == 1 || x == 2 || x == 3`",
        MAX_REFERENCES + 1
    )]
    TooManyReferences { position: Position },
    #[error("filter can only evaluate to {found}, never to a boolean (at {position})")]
    NotBoolean {
        position: Position,
        found: &'static str,
    },
    #[error("the filter could not be compiled: the CEL parser failed unexpectedly on it")]
    Internal,
}

/// Why a filter could not be evaluated for one event (treated as no match).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error(
        "`{name}` is undefined: the payload has no such top-level field, and no \
         variable or function has that name (guard it with has(payload.{name}))"
    )]
    Undefined { name: String },
    #[error("the payload has no field `{field}` where the filter reads it (guard it with has())")]
    MissingField { field: String },
    #[error("type mismatch: {message}")]
    TypeMismatch { message: String },
    #[error("the filter evaluated to a {found}, not a boolean")]
    NotBoolean { found: String },
    #[error(
        "the payload nests deeper than {MAX_PAYLOAD_DEPTH} levels; filters are not evaluated on it"
    )]
    PayloadTooDeep,
    #[error("evaluation failed: {message}")]
    Failed { message: String },
    #[error("the CEL interpreter failed unexpectedly on this filter and payload")]
    Internal,
}

/// A compiled filter; cheap to clone, shareable across threads.
#[derive(Clone)]
pub struct Filter {
    inner: Arc<Compiled>,
}

struct Compiled {
    source: String,
    expr: IdedExpr,
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Filter").field(&self.inner.source).finish()
    }
}

impl PartialEq for Filter {
    fn eq(&self, other: &Self) -> bool {
        self.inner.source == other.inner.source
    }
}

/// The standard environment, built once: it is immutable, and building it
/// registers every standard function.
fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib()))
}

impl Filter {
    /// Parses and checks `source` (see the module docs for the limits).
    pub fn compile(source: &str) -> Result<Filter, FilterError> {
        if source.len() > MAX_FILTER_LEN {
            return Err(FilterError::TooLong { len: source.len() });
        }
        if source.trim().is_empty() {
            return Err(FilterError::Empty);
        }
        let parsed = catch_unwind(|| {
            env()
                .parser()
                .max_recursion_depth(MAX_NESTING)
                .parse_with_source_info(source)
        })
        .map_err(|_| FilterError::Internal)?;
        let (expr, info) = parsed.map_err(|errors| syntax_error(source, &errors.errors))?;
        check_tree(&expr, &info, source)?;
        Ok(Filter {
            inner: Arc::new(Compiled {
                source: source.to_owned(),
                expr,
            }),
        })
    }

    /// The source the filter was compiled from.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// Evaluates the filter for one event: `Ok(true)` to deliver.
    pub fn evaluate(&self, event: &EventInput<'_>) -> Result<bool, EvalError> {
        let vars = event.variables()?;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut context = Context::with_env(Arc::clone(env()));
            context.set_variable_resolver(vars);
            CelValue::resolve(&self.inner.expr, &context)
        }))
        .map_err(|_| EvalError::Internal)?;
        match outcome {
            Ok(CelValue::Bool(b)) => Ok(b),
            Ok(other) => Err(EvalError::NotBoolean {
                found: other.type_of().to_string(),
            }),
            Err(error) => Err(eval_error(error)),
        }
    }
}

fn clamp(n: isize) -> u32 {
    u32::try_from(n.max(1)).unwrap_or(u32::MAX)
}

/// The first parse error as a [`FilterError`].
fn syntax_error(source: &str, errors: &[cel::ParseError]) -> FilterError {
    // `cel::ParseError` has no kind, only text. Should the text change, a
    // too-deep filter is still refused, as a syntax error at the same place.
    if let Some(deep) = errors.iter().find(|e| e.msg.contains("Recursion limit")) {
        return FilterError::TooDeep {
            position: Position {
                line: clamp(deep.pos.0),
                column: clamp(deep.pos.1),
            },
        };
    }
    let Some(first) = errors.first() else {
        return FilterError::Syntax {
            position: end_position(source),
            message: "the parser rejected the filter without saying why".into(),
            more: 0,
        };
    };
    FilterError::Syntax {
        position: Position {
            line: clamp(first.pos.0),
            column: clamp(first.pos.1),
        },
        message: truncate_chars(
            first.msg.trim_start_matches("Syntax error: "),
            MAX_MESSAGE_CHARS,
        ),
        more: errors.len() - 1,
    }
}

/// The position just past the end of `source`.
fn end_position(source: &str) -> Position {
    position_of(source, source.chars().count())
}

/// The position of the `char_offset`-th character of `source`.
fn position_of(source: &str, char_offset: usize) -> Position {
    let (mut line, mut column) = (1u32, 1u32);
    for c in source.chars().take(char_offset) {
        if c == '\n' {
            line = line.saturating_add(1);
            column = 1;
        } else {
            column = column.saturating_add(1);
        }
    }
    Position { line, column }
}
/// Where expression `id` starts, or where `fallback` starts, else 1:1.
pub(super) fn position_for(info: &SourceInfo, source: &str, ids: &[u64]) -> Position {
    ids.iter()
        .find_map(|id| info.offset_for(*id))
        .map_or(Position { line: 1, column: 1 }, |(start, _)| {
            position_of(source, start as usize)
        })
}

fn eval_error(error: ExecutionError) -> EvalError {
    let message = || truncate_chars(&error.to_string(), MAX_MESSAGE_CHARS);
    match &error {
        ExecutionError::UndeclaredReference(name) => EvalError::Undefined {
            name: truncate_chars(name, MAX_MESSAGE_CHARS),
        },
        ExecutionError::NoSuchKey(field) => EvalError::MissingField {
            field: truncate_chars(field, MAX_MESSAGE_CHARS),
        },
        ExecutionError::NoSuchOverload(_)
        | ExecutionError::ValuesNotComparable(..)
        | ExecutionError::UnexpectedType { .. }
        | ExecutionError::UnsupportedBinaryOperator(..)
        | ExecutionError::UnsupportedIndex(..)
        | ExecutionError::UnsupportedTargetType { .. }
        | ExecutionError::NotSupportedAsMethod { .. } => {
            EvalError::TypeMismatch { message: message() }
        }
        _ => EvalError::Failed { message: message() },
    }
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
