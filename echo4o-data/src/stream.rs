//! Readers that decode on a thread of their own and hand samples over a bounded channel.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use echo4o_core::Sample;

use crate::{Error, Result};

/// The sending end a producer writes samples (or errors naming their place) into.
pub(crate) type Sender = SyncSender<Result<Sample>>;

/// Runs `produce` on its own thread and streams what it sends, at most `capacity` ahead.
///
/// A panic in the producer (a bug, or a decoder that panics on a corrupt file) arrives as one
/// last error naming `origin`: a stream must never end early in silence, or `data stats` and
/// `data convert` would report and write part of a dataset as if it were all of it.
pub(crate) fn spawn(
    origin: PathBuf,
    capacity: usize,
    produce: impl FnOnce(&Sender) + Send + 'static,
) -> Box<dyn Iterator<Item = echo4o_core::Result<Sample>> + Send> {
    let (tx, rx) = sync_channel(capacity);
    std::thread::spawn(move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| produce(&tx)));
        if let Err(panic) = outcome {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            let _ = tx.send(Err(Error::Layout {
                path: origin,
                message: format!(
                    "reading stopped on an internal error ({what}); the rest was not read"
                ),
            }));
        }
    });
    Box::new(Stream(rx))
}

struct Stream(Receiver<Result<Sample>>);

impl Iterator for Stream {
    type Item = echo4o_core::Result<Sample>;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.recv().ok().map(|r| r.map_err(Into::into))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_producer_ends_the_stream_with_an_error() {
        let items: Vec<_> = spawn("data.parquet".into(), 4, |tx| {
            let s = Sample::new("a", "x", echo4o_core::SampleImage::encoded(vec![1], "m"));
            tx.send(Ok(s)).unwrap();
            panic!("offset out of range");
        })
        .collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        let e = items[1].as_ref().unwrap_err().to_string();
        assert!(
            e.contains("data.parquet") && e.contains("offset out of range"),
            "{e}"
        );
    }
}
