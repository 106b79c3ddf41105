//! Progress on stderr while calls run: a spinner, and a byte bar for uploads. indicatif draws
//! nothing when stderr is not a terminal, so scripts and pipes see no progress output.

use std::future::Future;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// How often spinners move.
const TICK: Duration = Duration::from_millis(100);

/// A spinner showing `message` until cleared; print beside it with `suspend`.
pub fn spinner(message: impl Into<String>) -> ProgressBar {
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(message.into());
    spinner.enable_steady_tick(TICK);
    spinner
}

/// Runs `future` with a spinner showing `message`, cleared when it ends.
pub async fn with_spinner<F: Future>(message: impl Into<String>, future: F) -> F::Output {
    let spinner = spinner(message);
    let output = future.await;
    spinner.finish_and_clear();
    output
}

/// A bar over `total` bytes, for an upload.
pub fn bytes_bar(total: u64, message: impl Into<String>) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.into());
    bar.enable_steady_tick(TICK);
    bar
}
