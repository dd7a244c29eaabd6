//! How one event is presented to filters: the variables (payload fields,
//! `payload`, `event_type`, `channels`), converted from JSON once per event.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, OnceLock};

use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::objects::{Key, Map};
use cel::Value as CelValue;
use serde_json::Value;

use super::check::BUILTIN_NAMES;
use super::{EvalError, MAX_PAYLOAD_DEPTH, VAR_CHANNELS, VAR_EVENT_TYPE, VAR_PAYLOAD};

/// One event as filters see it. Build it once per event and pass it to every
/// candidate subscription: the payload is converted for CEL on the first
/// evaluation only (and never if no subscription has a filter).
pub struct EventInput<'a> {
    event_type: &'a str,
    channels: &'a [String],
    payload: &'a Value,
    variables: OnceLock<Result<Variables, EvalError>>,
}

impl<'a> EventInput<'a> {
    pub fn new(event_type: &'a str, channels: &'a [String], payload: &'a Value) -> Self {
        Self {
            event_type,
            channels,
            payload,
            variables: OnceLock::new(),
        }
    }

    pub fn event_type(&self) -> &'a str {
        self.event_type
    }

    pub fn channels(&self) -> &'a [String] {
        self.channels
    }

    pub fn payload(&self) -> &'a Value {
        self.payload
    }

    pub(super) fn variables(&self) -> Result<&Variables, EvalError> {
        self.variables
            .get_or_init(|| Variables::of(self))
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl fmt::Debug for EventInput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventInput")
            .field("event_type", &self.event_type)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

/// The variables of one event, converted once.
#[derive(Debug)]
pub(super) struct Variables {
    by_name: BTreeMap<String, Box<dyn Val>>,
}

impl Variables {
    fn of(event: &EventInput<'_>) -> Result<Self, EvalError> {
        let payload = json_to_cel(event.payload, MAX_PAYLOAD_DEPTH)?;
        let mut values: Vec<(String, CelValue)> = Vec::new();
        if let Value::Object(fields) = event.payload {
            let usable =
                |name: &String| is_identifier(name) && !BUILTIN_NAMES.contains(&name.as_str());
            for (name, value) in fields.iter().filter(|(name, _)| usable(name)) {
                // Converting again is cheap next to evaluating, and simple.
                values.push((name.clone(), json_to_cel(value, MAX_PAYLOAD_DEPTH)?));
            }
        }
        // Reserved names come last so they win.
        values.push((VAR_PAYLOAD.into(), payload));
        values.push((VAR_EVENT_TYPE.into(), CelValue::from(event.event_type)));
        values.push((
            VAR_CHANNELS.into(),
            CelValue::List(Arc::new(
                event
                    .channels
                    .iter()
                    .map(|c| CelValue::from(c.as_str()))
                    .collect(),
            )),
        ));
        let mut by_name = BTreeMap::new();
        for (name, value) in values {
            let val = Box::<dyn Val>::try_from(value).map_err(|_| EvalError::Internal)?;
            by_name.insert(name, val);
        }
        Ok(Self { by_name })
    }
}

impl VariableResolver for Variables {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        self.by_name
            .get(variable)
            .map(|v| CowVal::Borrowed(v.as_ref()))
    }
}

/// Whether `name` can be written as a CEL identifier (other payload fields
/// are reachable through `payload` only, so `a.b` never means a field named
/// "a.b").
fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Converts JSON to a CEL value, refusing nesting deeper than `depth`.
fn json_to_cel(value: &Value, depth: usize) -> Result<CelValue, EvalError> {
    if depth == 0 {
        return Err(EvalError::PayloadTooDeep);
    }
    Ok(match value {
        Value::Null => CelValue::Null,
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                CelValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                CelValue::UInt(u)
            } else {
                CelValue::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => CelValue::from(s.as_str()),
        Value::Array(items) => CelValue::List(Arc::new(
            items
                .iter()
                .map(|i| json_to_cel(i, depth - 1))
                .collect::<Result<_, _>>()?,
        )),
        Value::Object(fields) => {
            let mut map = HashMap::with_capacity(fields.len());
            for (k, v) in fields {
                map.insert(Key::from(k.clone()), json_to_cel(v, depth - 1)?);
            }
            CelValue::Map(Map { map: Arc::new(map) })
        }
    })
}
