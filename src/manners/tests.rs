//! The manners on a router of the tests' own, over real TCP through
//! gotham's `AsyncTestServer`: what the programs' tests cannot show,
//! because their handlers never make a 404 themselves and their routes
//! take only `GET` and `HEAD`.

use super::*;
use gotham::plain::test::AsyncTestServer;
use gotham::router::builder::{build_simple_router, DefineSingleRoute, DrawRoutes};
use gotham::router::Router;

/// A handler's own 404, as a database lesson's "no such row" would be.
fn no_such_row(state: State) -> (State, Response<Body>) {
    let answer = response(
        &state,
        StatusCode::NOT_FOUND,
        mime::TEXT_PLAIN,
        "no such row\n",
    );
    (state, answer)
}

/// A handler whose 404 has nothing to say, not even a `content-type`.
fn bare_not_found(state: State) -> (State, Response<Body>) {
    let answer =
        gotham::helpers::http::response::create_empty_response(&state, StatusCode::NOT_FOUND);
    (state, answer)
}

/// A handler's 404 with words but no `content-type`.
fn words_without_a_type(state: State) -> (State, Response<Body>) {
    use gotham::handler::IntoBody;
    let mut answer =
        gotham::helpers::http::response::create_empty_response(&state, StatusCode::NOT_FOUND);
    *answer.body_mut() = "gone\n".into_body();
    (state, answer)
}

fn router() -> Router {
    build_simple_router(|route| {
        explain_404_and_405(route, &["/rows", "/bare", "/three"]);
        route.get_or_head("/rows").to(no_such_row);
        route.get("/bare").to(bare_not_found);
        route.get("/words").to(words_without_a_type);
        route
            .request(vec![Method::PUT, Method::GET, Method::DELETE], "/three")
            .to(no_such_row);
    })
}

/// The status, `content-length` and body of `method path`.
async fn ask(method: &str, path: &str) -> (StatusCode, Option<String>, String) {
    let server = AsyncTestServer::new(router())
        .await
        .expect("the test server starts");
    let response = server
        .client()
        .build_request()
        .method(method)
        .uri(format!("http://localhost{path}").as_str())
        .perform()
        .await
        .expect("an answer");
    let status = response.status();
    let length = response
        .headers()
        .get(CONTENT_LENGTH)
        .map(|value| value.to_str().expect("ASCII").to_string());
    let body = response.read_utf8_body().await.expect("a UTF-8 body");
    (status, length, body)
}

#[tokio::test]
async fn a_404_a_handler_made_with_words_of_its_own_keeps_them() {
    let (status, length, body) = ask("GET", "/rows").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, "no such row\n");
    let (status, head_length, head_body) = ask("HEAD", "/rows").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(head_length, length);
    assert_eq!(head_body, "");
    let (status, _, body) = ask("GET", "/words").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, "gone\n");
}

#[tokio::test]
async fn an_empty_404_from_a_handler_gets_the_routers_line_too() {
    let (status, _, body) = ask("GET", "/bare").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        "there is nothing at /bare: the paths here are /rows, /bare and /three\n"
    );
}

#[tokio::test]
async fn a_405_lists_every_method_the_path_takes() {
    let (status, _, body) = ask("POST", "/three").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        body,
        "POST is not allowed on /three: it takes DELETE, GET or PUT\n"
    );
}

#[test]
fn lists_in_words_join_with_commas_and_the_last_word() {
    assert_eq!(in_words(&[], "and"), "");
    assert_eq!(in_words(&["/a"], "and"), "/a");
    assert_eq!(in_words(&["GET", "HEAD"], "or"), "GET or HEAD");
    assert_eq!(in_words(&["/a", "/b", "/c"], "and"), "/a, /b and /c");
}
