//! HTTP's manners, shared by every program of the example: a `HEAD` gets
//! the headers a `GET` would, and a 404 or 405 says in one line what was
//! wrong.
//!
//! Upstream's example routes `GET` only, so there `curl -I` (which sends
//! `HEAD`) gets a 405, and a mistyped path or method an empty body. HTTP asks
//! every general-purpose server to answer `HEAD` wherever it answers `GET`
//! (RFC 9110, section 9.1): same status, same headers, no body. Link
//! checkers and load balancers' health checks send it too.
//!
//! A program adopts all of it with three changes, each a line or a word:
//!
//! ```text
//! build_simple_router(|route| {
//!     manners::explain_404_and_405(route, &["/sleep", "/loop"]);   // 1
//!     route.get_or_head("/sleep")                                  // 2
//!         ...
//! })
//! // 3, in the handlers and extenders:
//! manners::response(&state, StatusCode::OK, mime::TEXT_PLAIN, body)
//! ```
//!
//! 1. `explain_404_and_405` adds two of gotham's *response extenders* to the
//!    router, given the paths the router serves. gotham's router makes its
//!    404s and 405s itself, empty, before any handler runs; then, for every
//!    answer, it runs the extender registered for that answer's status.
//!    These fill in a `text/plain` line, and keep the `allow` header the
//!    router puts on a 405.
//! 2. `get_or_head` is gotham's own: the route matches `GET` and `HEAD`,
//!    and the same handler answers both. So a `HEAD` costs what a `GET`
//!    does, prints the same console lines, and a `HEAD` on
//!    `/sleep?seconds=N` still waits N seconds before it is answered.
//! 3. `response` takes the same arguments as gotham's `create_response`
//!    and differs only for `HEAD`, where it also says how long the body
//!    would have been (see there why that takes a function of its own).

use gotham::bytes::Bytes;
use gotham::helpers::http::response::create_response;
use gotham::helpers::http::Body;
use gotham::hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use gotham::hyper::{Method, Response, StatusCode, Uri};
use gotham::pipeline::PipelineHandleChain;
use gotham::router::builder::RouterBuilder;
use gotham::router::response::ResponseExtender;
use gotham::state::{FromState, State};
use mime::Mime;

/// gotham's `create_response`, and for a `HEAD` the `content-length` the
/// `GET` would have had.
///
/// For a `HEAD`, `create_response` leaves the body out. hyper, given no
/// body, cannot know how long it would have been, and sends no
/// `content-length` at all, where the `GET` has one. So this function
/// measures the body first and, for a `HEAD`, writes its length itself.
/// (hyper never sends body bytes in answer to a `HEAD`, whatever the
/// response holds: it knows the request's method too.)
pub fn response(
    state: &State,
    status: StatusCode,
    mime: Mime,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let body: Bytes = body.into();
    let length = body.len();
    let mut response = create_response(state, status, mime, body);
    if is_head(state) {
        response
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    response
}

fn is_head(state: &State) -> bool {
    Method::try_borrow_from(state) == Some(&Method::HEAD)
}

/// Gives the router's own 404s and 405s a `text/plain` line saying what
/// was wrong: for a 404 the path asked for and `paths`, those the router
/// serves; for a 405 the method, and the methods the path takes (read
/// from the `allow` header gotham puts on it, which stays).
///
/// Call it first thing in the closure given to `build_simple_router` or
/// `build_router`. A 404 or 405 that a handler makes itself, with a body
/// or a `content-type` of its own, is left as the handler made it.
pub fn explain_404_and_405<C, P>(route: &mut RouterBuilder<'_, C, P>, paths: &[&str])
where
    C: PipelineHandleChain<P> + Copy + Send + Sync + 'static,
    P: Send + Sync + 'static,
{
    route.add_response_extender(
        StatusCode::NOT_FOUND,
        NotFound {
            paths: in_words(paths, "and"),
        },
    );
    route.add_response_extender(StatusCode::METHOD_NOT_ALLOWED, MethodNotAllowed);
}

/// The 404's extender: the paths there are, already in words.
struct NotFound {
    paths: String,
}

impl ResponseExtender<Body> for NotFound {
    fn extend(&self, state: &mut State, response: &mut Response<Body>) {
        let line = format!(
            "there is nothing at {}: the paths here are {}\n",
            path(state),
            self.paths
        );
        explain(state, response, line);
    }
}

/// The 405's extender.
struct MethodNotAllowed;

impl ResponseExtender<Body> for MethodNotAllowed {
    fn extend(&self, state: &mut State, response: &mut Response<Body>) {
        // gotham adds one `allow` value per method, in alphabetical order.
        let allowed = response
            .headers()
            .get_all(ALLOW)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect::<Vec<_>>();
        let method = Method::try_borrow_from(state).map_or("this method", Method::as_str);
        let line = format!(
            "{method} is not allowed on {}: it takes {}\n",
            path(state),
            in_words(&allowed, "or")
        );
        explain(state, response, line);
    }
}

/// The path the client asked for, without the query string.
fn path(state: &State) -> &str {
    Uri::try_borrow_from(state).map_or("this path", Uri::path)
}

/// Puts `line` in `response`, unless a handler has already said something.
///
/// The router's own 404 and 405 have neither a body nor a `content-type`;
/// an extender runs on every answer with its status, also on one a handler
/// made (a database lesson's "no such row", say), whose words should stay.
/// The headers already there (`allow`, `x-request-id`) stay too.
fn explain(state: &State, response: &mut Response<Body>, line: String) {
    use gotham::http_body::Body as _;
    if !response.body().is_end_stream() || response.headers().contains_key(CONTENT_TYPE) {
        return;
    }
    let explained = self::response(state, response.status(), mime::TEXT_PLAIN, line);
    let (parts, body) = explained.into_parts();
    response.headers_mut().extend(parts.headers);
    *response.body_mut() = body;
}

/// `a`, `a and b`, `a, b and c` (or with `or` for `and`).
fn in_words(items: &[&str], and: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} {and} {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests;
