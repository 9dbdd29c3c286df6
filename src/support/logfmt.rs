//! The text log format's fields: every value quoted and escaped (`key="value"`), so a value
//! taken from a request — a key name in a path, a token audience — can never read as fields of
//! its own (`x outcome="ok" principal=admin`) nor start a line. Numbers and booleans stay bare;
//! the event's message (Signet's own fixed text) is written first, control characters escaped.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;

/// The field formatter of the text log format.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuotedFields;

impl<'writer> FormatFields<'writer> for QuotedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = Visitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Visitor<'writer> {
    writer: Writer<'writer>,
    first: bool,
    result: fmt::Result,
}

impl Visitor<'_> {
    fn separator(&mut self) -> fmt::Result {
        if std::mem::take(&mut self.first) {
            Ok(())
        } else {
            self.writer.write_char(' ')
        }
    }

    fn quoted(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        self.result = self.separator().and_then(|()| {
            if field.name() == "message" {
                self.writer.write_str(&super::text::escape_control(value))
            } else {
                write!(self.writer, "{}=\"{}\"", field.name(), escape(value))
            }
        });
    }

    fn bare(&mut self, field: &Field, value: &dyn fmt::Display) {
        if self.result.is_err() {
            return;
        }
        self.result = self
            .separator()
            .and_then(|()| write!(self.writer, "{}={value}", field.name()));
    }
}

/// `value` with `"` and `\` escaped and control characters written as escapes.
pub fn escape(value: &str) -> String {
    super::text::escape_control(value).replace('"', "\\\"")
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.quoted(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.quoted(field, &format!("{value:?}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.bare(field, &value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.bare(field, &value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.bare(field, &value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.bare(field, &value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.quoted(field, &value.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_cannot_be_closed_from_inside_a_value() {
        assert_eq!(escape("x\" outcome=\"ok"), "x\\\" outcome=\\\"ok");
        assert_eq!(escape("a\nb\\"), "a\\nb\\\\");
    }
}
