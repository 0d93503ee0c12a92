//! Progress of long commands (deploying hundreds of nodes, benchmark runs): a bar
//! (indicatif) when stderr is a terminal, plain lines otherwise, so that logs of CI
//! and scripts stay readable.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Plain lines come at most this often, besides the first and the last.
const LINE_EVERY: Duration = Duration::from_secs(2);

/// The progress of one count towards a total.
pub(crate) struct Progress {
    what: String,
    total: u64,
    done: u64,
    out: Out,
}

enum Out {
    Bar(ProgressBar),
    Lines {
        last: Option<Instant>,
        /// What was shown last, so that an unchanged count is not repeated.
        shown: Option<u64>,
    },
}

impl Progress {
    /// Progress of `what` (e.g. "nodes joined") towards `total`: a bar on a terminal.
    pub(crate) fn new(what: &str, total: usize) -> Progress {
        let out = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total as u64);
            let style = ProgressStyle::with_template(
                "{msg:>16} [{bar:40.cyan/blue}] {pos}/{len} {elapsed_precise}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(what.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            Out::Bar(bar)
        } else {
            Out::Lines {
                last: None,
                shown: None,
            }
        };
        Progress::with_output(what, total, out)
    }

    /// Plain lines, whatever stderr is.
    #[cfg(test)]
    fn lines(what: &str, total: usize) -> Progress {
        Progress::with_output(
            what,
            total,
            Out::Lines {
                last: None,
                shown: None,
            },
        )
    }

    fn with_output(what: &str, total: usize, out: Out) -> Progress {
        Progress {
            what: what.to_string(),
            total: total as u64,
            done: 0,
            out,
        }
    }

    /// `done` of the total are done now; the line to print, in plain mode, if one is due.
    fn update(&mut self, done: usize, now: Instant) -> Option<String> {
        self.done = (done as u64).min(self.total);
        match &mut self.out {
            Out::Bar(bar) => {
                bar.set_position(self.done);
                None
            }
            Out::Lines { last, shown } => {
                let due = last.is_none_or(|at| now.duration_since(at) >= LINE_EVERY)
                    || self.done == self.total;
                if !due || *shown == Some(self.done) {
                    return None;
                }
                *last = Some(now);
                *shown = Some(self.done);
                Some(format!("  {}: {}/{}", self.what, self.done, self.total))
            }
        }
    }

    /// `done` of the total are done now.
    pub(crate) fn set(&mut self, done: usize) {
        if let Some(line) = self.update(done, Instant::now()) {
            eprintln!("{line}");
        }
    }

    /// One more is done.
    pub(crate) fn inc(&mut self) {
        self.set(self.done as usize + 1);
    }

    /// Runs `work` (which may print, or run a program that prints) with the bar hidden,
    /// then shows it again.
    pub(crate) fn suspend<T>(&self, work: impl FnOnce() -> T) -> T {
        match &self.out {
            Out::Bar(bar) => bar.suspend(work),
            Out::Lines { .. } => work(),
        }
    }

    /// Prints `line` above the bar (or as a plain line).
    pub(crate) fn println(&self, line: &str) {
        match &self.out {
            Out::Bar(bar) => bar.println(line),
            Out::Lines { .. } => eprintln!("{line}"),
        }
    }

    /// Removes the bar; the lines stay as they are.
    pub(crate) fn finish(self) {
        if let Out::Bar(bar) = self.out {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_come_on_a_timer_and_at_the_end() {
        let start = Instant::now();
        let mut progress = Progress::lines("nodes joined", 10);
        assert_eq!(
            progress.update(1, start).as_deref(),
            Some("  nodes joined: 1/10"),
            "the first count is shown"
        );
        assert_eq!(progress.update(2, start + Duration::from_millis(500)), None);
        assert_eq!(
            progress.update(5, start + LINE_EVERY).as_deref(),
            Some("  nodes joined: 5/10")
        );
        assert_eq!(
            progress.update(5, start + 3 * LINE_EVERY),
            None,
            "an unchanged count is not repeated"
        );
        assert_eq!(
            progress
                .update(12, start + 3 * LINE_EVERY + Duration::from_millis(1))
                .as_deref(),
            Some("  nodes joined: 10/10"),
            "the end is shown at once, and never past the total"
        );
        assert_eq!(progress.suspend(|| 7), 7);
        progress.finish();
    }
}
