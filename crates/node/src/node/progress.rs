//! The progress bar of `tds fetch` on stderr: drawn only on a terminal, and only once a
//! fetch has run for a second (short fetches print nothing but their JSON).

use std::sync::Arc;
use std::time::{Duration, Instant};

/// A fetch's progress bar.
pub(crate) struct Bar {
    bar: indicatif::ProgressBar,
}

impl Bar {
    pub(crate) fn new() -> Bar {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(0),
            indicatif::ProgressDrawTarget::hidden(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style);
        }
        Bar { bar }
    }

    /// The connector's progress callback: (bytes verified so far, total).
    pub(crate) fn callback(&self) -> tds_connector::ProgressFn {
        let bar = self.bar.clone();
        let started = Instant::now();
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let shown = Arc::new(std::sync::atomic::AtomicBool::new(false));
        Arc::new(move |done, total| {
            bar.set_length(total);
            bar.set_position(done);
            if tty
                && started.elapsed() > Duration::from_secs(1)
                && !shown.swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
        })
    }

    pub(crate) fn finish(self) {
        self.bar.finish_and_clear();
    }
}
