//! How event types are shown: one type (`event-type get|create|update|archive`)
//! and the listing (`event-type list`), as JSON and as text.
//!
//! The schema is shown as JSON (an object in `--output json`, indented text
//! otherwise), not as the string the protocol carries it in.
use std::fmt::Write as _;

use herald_proto::v1;
use serde::Serialize;

use super::{format_unix_ms, table, yes_no, Render};

/// An event type as the client shows it.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct EventTypeView {
    pub name: String,
    pub description: String,
    /// The JSON Schema payloads must match; `null` = any JSON. A schema the
    /// server sent that is not JSON (it never should) is kept as a string.
    pub schema: Option<serde_json::Value>,
    /// Archived types cannot be published.
    pub archived: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl From<v1::EventType> for EventTypeView {
    fn from(t: v1::EventType) -> Self {
        let schema = (!t.schema_json.trim().is_empty()).then(|| {
            serde_json::from_str(&t.schema_json).unwrap_or(serde_json::Value::String(t.schema_json))
        });
        EventTypeView {
            name: t.name,
            description: t.description,
            schema,
            archived: t.archived,
            created_at_ms: t.created_at_ms,
            updated_at_ms: t.updated_at_ms,
        }
    }
}

impl Render for EventTypeView {
    fn to_text(&self) -> String {
        let mut out = String::new();
        let mut field = |label: &str, value: &str| {
            let label = if label.is_empty() {
                String::new()
            } else {
                format!("{label}:")
            };
            let _ = writeln!(out, "{label:<15}{value}");
        };
        field("name", &self.name);
        if !self.description.is_empty() {
            field("description", &self.description);
        }
        field("archived", yes_no(self.archived));
        match &self.schema {
            None => field("schema", "(none: any JSON payload)"),
            Some(schema) => {
                let text = serde_json::to_string_pretty(schema).unwrap_or_default();
                for (i, line) in text.lines().enumerate() {
                    field(if i == 0 { "schema" } else { "" }, line);
                }
            }
        }
        field("created", &format_unix_ms(self.created_at_ms));
        field("updated", &format_unix_ms(self.updated_at_ms));
        out
    }
}

/// `event-type list`: a JSON array, or an aligned table.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(transparent)]
pub(crate) struct EventTypeListView(pub Vec<EventTypeView>);

impl Render for EventTypeListView {
    fn to_text(&self) -> String {
        if self.0.is_empty() {
            return "no event types\n".to_owned();
        }
        let rows = self.0.iter().map(|t| {
            [
                t.name.clone(),
                yes_no(t.archived).to_owned(),
                yes_no(t.schema.is_some()).to_owned(),
                // One row per type, whatever the description holds.
                t.description.replace(['\r', '\n'], " "),
            ]
        });
        table(&["NAME", "ARCHIVED", "SCHEMA", "DESCRIPTION"], rows)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{render, OutputFormat};
    use super::*;

    fn event_type() -> v1::EventType {
        v1::EventType {
            name: "order.shipped".into(),
            description: "an order left the warehouse".into(),
            schema_json: r#"{"type":"object","required":["id"]}"#.into(),
            archived: false,
            created_at_ms: 1_700_000_000_123,
            updated_at_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn json_carries_the_schema_as_json() {
        let view = EventTypeView::from(event_type());
        let json: serde_json::Value =
            serde_json::from_str(&render(OutputFormat::Json, &view).unwrap()).unwrap();
        assert_eq!(json["name"], "order.shipped");
        assert_eq!(json["description"], "an order left the warehouse");
        assert_eq!(json["schema"]["required"][0], "id");
        assert_eq!(json["archived"], false);
        assert_eq!(json["created_at_ms"], 1_700_000_000_123_i64);

        let none = EventTypeView::from(v1::EventType {
            schema_json: String::new(),
            ..event_type()
        });
        let json = serde_json::to_value(&none).unwrap();
        assert!(json["schema"].is_null(), "{json}");

        let odd = EventTypeView::from(v1::EventType {
            schema_json: "{not json".into(),
            ..event_type()
        });
        assert_eq!(
            odd.schema,
            Some(serde_json::Value::String("{not json".into()))
        );
    }

    #[test]
    fn text_shows_the_schema_indented_in_its_own_key_order() {
        let text = EventTypeView::from(event_type()).to_text();
        assert_eq!(
            text,
            "name:          order.shipped\n\
             description:   an order left the warehouse\n\
             archived:      no\n\
             schema:        {\n\
             \x20                \"type\": \"object\",\n\
             \x20                \"required\": [\n\
             \x20                  \"id\"\n\
             \x20                ]\n\
             \x20              }\n\
             created:       2023-11-14T22:13:20.123Z\n\
             updated:       2023-11-14T22:13:20.123Z\n"
        );
        let bare = EventTypeView::from(v1::EventType {
            description: String::new(),
            schema_json: String::new(),
            archived: true,
            ..event_type()
        })
        .to_text();
        assert!(!bare.contains("description"), "{bare}");
        assert!(bare.contains("archived:      yes\n"), "{bare}");
        assert!(
            bare.contains("schema:        (none: any JSON payload)\n"),
            "{bare}"
        );
    }

    #[test]
    fn list_is_an_array_in_json_and_a_table_in_text() {
        let a = EventTypeView::from(event_type());
        let b = EventTypeView::from(v1::EventType {
            name: "invoice.paid".into(),
            description: "two\nlines".into(),
            schema_json: String::new(),
            archived: true,
            ..event_type()
        });
        let list = EventTypeListView(vec![a, b]);
        let json: serde_json::Value =
            serde_json::from_str(&render(OutputFormat::Json, &list).unwrap()).unwrap();
        assert_eq!(json.as_array().unwrap().len(), 2);
        assert_eq!(json[1]["name"], "invoice.paid");
        assert_eq!(
            list.to_text(),
            "NAME           ARCHIVED  SCHEMA  DESCRIPTION\n\
             order.shipped  no        yes     an order left the warehouse\n\
             invoice.paid   yes       no      two lines\n"
        );
        assert_eq!(EventTypeListView(vec![]).to_text(), "no event types\n");
    }
}
