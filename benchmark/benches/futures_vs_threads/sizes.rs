//! The bytes of a waiting request's future itself, as each server's handler
//! builds it: what `Box` allocates for it, not what it points to.

use std::net::SocketAddr;

use gotham::bytes::Bytes;
use gotham::http_body_util::Empty;
use gotham::hyper::Request;
use gotham::state::State;

use crate::example::{loop_handler, sleep_handler, QueryStringExtractor};
use crate::servers::bare_hyper_sleep;

/// Sizes in bytes.
#[derive(Clone, Copy, Debug)]
pub struct FutureSizes {
    /// The example's `/sleep` and `/loop` futures, including the `State`
    /// they carry (its map's heap is not counted here).
    pub gotham_sleep: usize,
    pub gotham_loop: usize,
    /// The bare hyper server's `/sleep` future.
    pub bare_hyper_sleep: usize,
}

/// Builds one future of each kind, as a request for one second would, and
/// measures it. Must run inside a tokio runtime: making a `Sleep` takes a
/// handle to the runtime's timer (the deadline is filed there only when the
/// sleep is first polled, which never happens here).
pub fn measure() -> FutureSizes {
    let request = || {
        Request::get("/sleep?seconds=1")
            .body(Empty::<Bytes>::new())
            .expect("a valid request")
    };
    let client = SocketAddr::from(([127, 0, 0, 1], 1));
    let handler_future_size = |handler: fn(State) -> _| {
        let mut state = State::from_request(request(), client);
        state.put(QueryStringExtractor { seconds: 1 });
        let future: std::pin::Pin<Box<gotham::handler::HandlerFuture>> = handler(state);
        // The box holds a `dyn Future`; this is the size of the value in it.
        std::mem::size_of_val(&*future)
    };
    FutureSizes {
        gotham_sleep: handler_future_size(sleep_handler),
        gotham_loop: handler_future_size(loop_handler),
        bare_hyper_sleep: std::mem::size_of_val(&bare_hyper_sleep(request())),
    }
}
