//! A spinner on stderr for work that takes seconds (RSA key generation in a token, `ca init`
//! with RSA keys). Drawn only when stderr is a terminal; scripts and logs see nothing.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A running spinner; cleared when dropped.
pub(super) struct Spinner(ProgressBar);

impl Spinner {
    /// Starts a spinner saying `message`, if stderr is a terminal.
    pub(super) fn start(message: impl Into<String>) -> Self {
        use std::io::IsTerminal;
        let bar = if std::io::stderr().is_terminal() {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(message.into());
        bar.enable_steady_tick(Duration::from_millis(120));
        Spinner(bar)
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
