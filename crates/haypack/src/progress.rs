//! Progress bars on a terminal, silence elsewhere.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar counting bytes, showing files, rate and ETA; hidden when stderr is not a terminal or
/// the user asked for quiet.
pub struct Bar {
    bar: ProgressBar,
    files: AtomicU64,
    unit: &'static str,
}

impl Bar {
    /// A bar for `verb`-ing things counted in `unit`s ("files", "objects").
    pub fn new(quiet: bool, verb: &str, unit: &'static str) -> Self {
        let visible = !quiet && std::io::stderr().is_terminal();
        let target = if visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let bar = ProgressBar::with_draw_target(None, target);
        let template = format!(
            "{verb} {{msg}} [{{bar:30}}] {{binary_bytes}}/{{binary_total_bytes}} {{binary_bytes_per_sec}} ETA {{eta}}"
        );
        bar.set_style(ProgressStyle::with_template(&template).expect("static template").progress_chars("=> "));
        Bar { bar, files: AtomicU64::new(0), unit }
    }

    /// Whether the bar is drawn: work done only for the bar (counting the source's bytes) is
    /// skipped when it is not.
    pub fn is_visible(&self) -> bool {
        !self.bar.is_hidden()
    }

    /// Sets the total once it is known.
    pub fn set_total(&self, bytes: u64) {
        self.bar.set_length(bytes);
    }

    /// Counts `files` files of `bytes` bytes as done.
    pub fn inc(&self, files: u64, bytes: u64) {
        let n = self.files.fetch_add(files, Ordering::Relaxed) + files;
        self.bar.set_message(format!("{n} {}", self.unit));
        self.bar.inc(bytes);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl haypack_pack::Progress for Bar {
    fn packed(&self, files: u64, bytes: u64) {
        self.inc(files, bytes);
    }

    fn skipped(&self, path: &Path, reason: &str) {
        tracing::debug!("skipped {}: {reason}", path.display());
    }
}
