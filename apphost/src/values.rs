//! Checking client values against field types and turning them into SQL text parameters (pure).
//!
//! Every value is bound as text and cast in SQL to the column's type (see
//! [`neo_model::FieldType::postgres_type`]), so this module only has to decide whether a value is acceptable
//! and write it in a form Postgres parses unambiguously.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;

use neo_model::FieldType;

/// What a value should have looked like, for the error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}")]
pub struct Mismatch {
    /// E.g. "an integer" or "a date YYYY-MM-DD".
    pub expected: &'static str,
}

fn expected(kind: &FieldType) -> Mismatch {
    let expected = match kind {
        FieldType::Text => "a string",
        FieldType::Integer => "an integer",
        FieldType::Decimal => "a decimal number or a string holding one",
        FieldType::Boolean => "true or false",
        FieldType::Date => "a date YYYY-MM-DD",
        FieldType::DateTime => "an RFC 3339 date-time",
        FieldType::Ref(_) => "the integer id of the referenced row",
    };
    Mismatch { expected }
}

/// Checks a JSON value for a field; `Ok(None)` stands for `null`.
///
/// # Errors
/// A value of the wrong type or form.
pub fn from_json(kind: &FieldType, value: &Value) -> Result<Option<String>, Mismatch> {
    let text = match (kind, value) {
        (_, Value::Null) => return Ok(None),
        (FieldType::Text, Value::String(s)) => s.clone(),
        (FieldType::Integer | FieldType::Ref(_), Value::Number(n)) => {
            n.as_i64().ok_or_else(|| expected(kind))?.to_string()
        }
        (FieldType::Decimal, Value::Number(n)) => n.to_string(),
        (FieldType::Boolean, Value::Bool(b)) => b.to_string(),
        (FieldType::Decimal | FieldType::Date | FieldType::DateTime, Value::String(s)) => {
            return from_text(kind, s).map(Some);
        }
        _ => return Err(expected(kind)),
    };
    Ok(Some(text))
}

/// Checks a value given as text (a query-string filter) for a field.
///
/// # Errors
/// A value of the wrong form.
pub fn from_text(kind: &FieldType, text: &str) -> Result<String, Mismatch> {
    let ok = match kind {
        FieldType::Text => true,
        FieldType::Integer | FieldType::Ref(_) => text.parse::<i64>().is_ok(),
        FieldType::Decimal => is_decimal(text),
        FieldType::Boolean => matches!(text, "true" | "false"),
        FieldType::Date => is_date(text),
        FieldType::DateTime => time::OffsetDateTime::parse(text, &Rfc3339).is_ok(),
    };
    if ok {
        Ok(text.to_owned())
    } else {
        Err(expected(kind))
    }
}

/// `YYYY-MM-DD`, a real calendar day.
fn is_date(text: &str) -> bool {
    let mut parts = text.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !(digits(y, 4) && digits(m, 2) && digits(d, 2)) {
        return false;
    }
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i32>(), m.parse::<u8>(), d.parse::<u8>()) else {
        return false;
    };
    time::Month::try_from(m).is_ok_and(|m| time::Date::from_calendar_date(y, m, d).is_ok())
}

/// `-12`, `3.50`, `.5`, `1e3`, `-2.5E-4`: what Postgres `NUMERIC` accepts, without NaN or infinity.
fn is_decimal(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (body, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = (!int.is_empty() || !frac.is_empty()) && digits(int) && digits(frac);
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.len() <= 6 && digits(e)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn accepts_values_of_the_right_type() {
        assert_eq!(
            from_json(&FieldType::Integer, &json!(42))
                .unwrap()
                .as_deref(),
            Some("42")
        );
        assert_eq!(
            from_json(&FieldType::Decimal, &json!("12.3400"))
                .unwrap()
                .as_deref(),
            Some("12.3400")
        );
        assert_eq!(
            from_json(&FieldType::Decimal, &json!(1.5))
                .unwrap()
                .as_deref(),
            Some("1.5")
        );
        assert_eq!(
            from_json(&FieldType::Boolean, &json!(true))
                .unwrap()
                .as_deref(),
            Some("true")
        );
        assert_eq!(
            from_json(&FieldType::Date, &json!("2024-02-29"))
                .unwrap()
                .as_deref(),
            Some("2024-02-29")
        );
        assert!(from_json(&FieldType::DateTime, &json!("2024-02-29T10:00:00+01:00")).is_ok());
        assert_eq!(from_json(&FieldType::Text, &Value::Null).unwrap(), None);
    }

    #[test]
    fn refuses_values_of_the_wrong_type() {
        assert!(from_json(&FieldType::Integer, &json!("42")).is_err());
        assert!(from_json(&FieldType::Integer, &json!(4.2)).is_err());
        assert!(from_json(&FieldType::Decimal, &json!("NaN")).is_err());
        assert!(from_json(&FieldType::Decimal, &json!("1.2.3")).is_err());
        assert!(from_json(&FieldType::Text, &json!(1)).is_err());
        assert!(from_json(&FieldType::Date, &json!("2023-02-29")).is_err());
        assert!(from_json(&FieldType::DateTime, &json!("2024-02-29 10:00")).is_err());
        assert!(from_json(&FieldType::Ref("P".into()), &json!(true)).is_err());
    }

    #[test]
    fn decimals() {
        for ok in ["0", "-12", "3.50", ".5", "5.", "1e3", "-2.5E-4", "+7"] {
            assert!(is_decimal(ok), "{ok}");
        }
        for bad in ["", ".", "-", "1e", "e5", "1,5", "Infinity", "1e1234567"] {
            assert!(!is_decimal(bad), "{bad}");
        }
    }
}
