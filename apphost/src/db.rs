//! The database's availability: how long the host waits for it, and which failures mean it is
//! unavailable (the client gets `503` at once and may retry) rather than broken (`500`).
//!
//! Connections are opened lazily and a request waits at most [`ACQUIRE_TIMEOUT`] for one, so a
//! dead database costs a request half a second, never a hang: sqlx keeps retrying a refused
//! connection until that deadline.

use std::time::Duration;

use sqlx::PgPool;

/// How long a request (or `/readyz`) waits for a pooled connection before giving up.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(500);

/// How long `/readyz` waits for `SELECT 1` in all.
pub const PING_TIMEOUT: Duration = Duration::from_millis(500);

/// Whether `error` says the database cannot be reached or is going away, as opposed to a
/// statement it refused. Connection failures, an exhausted wait for a connection, and the
/// SQLSTATEs of class 08 (connection exception) and 57P01–57P03 (shutting down, cannot connect
/// now) count.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_unavailable_code(&code)),
        _ => false,
    }
}

/// Whether a SQLSTATE means the server cannot serve now (see [`is_unavailable`]).
pub fn is_unavailable_code(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// `SELECT 1` within [`PING_TIMEOUT`]; the error says why not, for `/readyz`'s reasons.
///
/// # Errors
/// The database did not answer in time or failed.
pub async fn ping(pool: &PgPool) -> Result<(), String> {
    let limit = PING_TIMEOUT.as_millis();
    match tokio::time::timeout(PING_TIMEOUT, sqlx::query("SELECT 1").execute(pool)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(sqlx::Error::PoolTimedOut)) | Err(_) => Err(format!(
            "database: unavailable (no answer within {limit} ms)"
        )),
        Ok(Err(e)) if is_unavailable(&e) => Err(format!("database: unavailable ({e})")),
        Ok(Err(e)) => Err(format!("database: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_for_a_connection_or_losing_it_is_unavailable() {
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(is_unavailable(&sqlx::Error::PoolClosed));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(is_unavailable(&sqlx::Error::Io(reset)));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert!(!is_unavailable(&sqlx::Error::Protocol(
            "bad message".into()
        )));
    }

    #[test]
    fn shutdown_and_connection_states_are_unavailable_and_refusals_are_not() {
        for code in ["08006", "08001", "57P01", "57P02", "57P03"] {
            assert!(is_unavailable_code(code), "{code}");
        }
        for code in ["23505", "22P02", "42P01", "57014", "40001"] {
            assert!(!is_unavailable_code(code), "{code}");
        }
    }
}
