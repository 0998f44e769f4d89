//! Stop signals: Ctrl-C and SIGTERM as one stream of stop requests, which
//! the accept loop reads to begin a graceful shutdown and, on a second one,
//! to end it at once.

use std::io;

use futures::stream::{self, Stream, StreamExt};
use tokio::signal::unix::{signal, SignalKind};

/// SIGINT (Ctrl-C) and SIGTERM, as one stream of stop requests.
///
/// The handlers are installed when this is called, not when the stream is
/// first polled, so `listen_and_serve` calls it before it says it is
/// listening: from then on, Ctrl-C asks for a graceful shutdown instead of
/// killing the process.
pub fn stop_signals() -> io::Result<impl Stream<Item = ()> + Unpin> {
    let interrupt = signal(SignalKind::interrupt())?;
    let terminate = signal(SignalKind::terminate())?;
    Ok(Box::pin(stream::unfold(
        (interrupt, terminate),
        |(mut interrupt, mut terminate)| async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            Some(((), (interrupt, terminate)))
        },
    )))
}

/// The next stop request; a stream that has ended never asks again.
pub(super) async fn next_stop(stop: &mut (impl Stream<Item = ()> + Unpin)) {
    if stop.next().await.is_none() {
        std::future::pending::<()>().await;
    }
}
