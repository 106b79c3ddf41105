//! Who is asking: the `neo_session` cookie holds the user's gateway token, and a form that
//! changes anything carries the value of the `neo_csrf` cookie (a random value set on the first
//! visit) in its `csrf` field. Both cookies are `HttpOnly`, `Secure` and `SameSite=Strict`: a
//! script cannot read them and another site's page cannot send them, nor learn the CSRF value
//! to forge a form.

use axum::http::HeaderMap;

/// The session cookie: the gateway token.
pub const SESSION: &str = "neo_session";
/// The CSRF cookie, echoed by every form in its `csrf` field.
pub const CSRF: &str = "neo_csrf";

/// The cookies of a request that matter to the portal.
#[derive(Debug, Clone, Default)]
pub struct Visitor {
    /// The gateway token, when signed in.
    pub token: Option<String>,
    /// The CSRF value, once set.
    pub csrf: Option<String>,
}

impl Visitor {
    /// Reads the `Cookie` headers.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut visitor = Self::default();
        for header in headers.get_all(axum::http::header::COOKIE) {
            let Ok(text) = header.to_str() else { continue };
            for pair in text.split(';') {
                let Some((name, value)) = pair.trim().split_once('=') else {
                    continue;
                };
                if value.is_empty() {
                    continue;
                }
                match name {
                    SESSION => visitor.token = Some(value.to_owned()),
                    CSRF => visitor.csrf = Some(value.to_owned()),
                    _ => {}
                }
            }
        }
        visitor
    }

    /// Whether a form's `csrf` value is this visitor's (compared in constant time).
    pub fn csrf_matches(&self, given: Option<&str>) -> bool {
        match (self.csrf.as_deref(), given) {
            (Some(ours), Some(given)) if ours.len() == given.len() => {
                ours.bytes()
                    .zip(given.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
            }
            _ => false,
        }
    }
}

/// A `Set-Cookie` value for `name` (`HttpOnly; Secure; SameSite=Strict`, path `/`); `max_age`
/// in seconds (0 deletes it, `None`: for the browser session).
pub fn set_cookie(name: &str, value: &str, max_age: Option<u64>) -> String {
    let age = max_age
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    format!("{name}={value}; Path=/; HttpOnly; Secure; SameSite=Strict{age}")
}

/// A new CSRF value: 32 random bytes, hex.
///
/// # Errors
/// When the system's random source fails.
pub fn new_csrf() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_and_the_csrf_value_must_match_exactly() {
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            "other=1; neo_session=tok.en; neo_csrf=abc123"
                .parse()
                .expect("a header"),
        );
        let visitor = Visitor::from_headers(&headers);
        assert_eq!(visitor.token.as_deref(), Some("tok.en"));
        assert!(visitor.csrf_matches(Some("abc123")));
        assert!(!visitor.csrf_matches(Some("abc124")));
        assert!(!visitor.csrf_matches(Some("abc12")));
        assert!(!visitor.csrf_matches(None));
        assert!(!Visitor::default().csrf_matches(Some("")));
        assert_eq!(
            set_cookie(SESSION, "t", Some(60)),
            "neo_session=t; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=60"
        );
    }
}
