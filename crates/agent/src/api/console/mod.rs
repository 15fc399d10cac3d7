//! The web console: server-rendered pages on the API port, for the admin token's holder.
//!
//! Logging in sets the token as an `HttpOnly`, `Secure`, `SameSite=Strict` cookie; every other
//! page and action checks it exactly as the API checks a bearer token. Pages are rendered with
//! maud, which escapes every interpolated string, and served with a content security policy
//! that allows only this console's own script and style, so even a string that slipped through
//! could not run. Actions are plain form posts (working without JavaScript); the ones that
//! stop or move work (stop, move, pause, drain, failback) first answer with a confirmation page.
//! `console.js` keeps a page live: on every cluster event (`/console/stream`, the event stream
//! with cookie authentication) and every few seconds it fetches the page again and swaps in the
//! sections marked `data-live`.

mod pages;
mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use halo_api::cluster::StatusView;
use halo_core::access::{AccessRole, Caller};
use halo_core::events::EventKind;
use maud::Markup;
use serde::Deserialize;

use crate::error::AgentError;
use halo_api::roles::{MoveRequestBody, PauseBody, ResumeBody};

use crate::api::roles;
use crate::cluster::agent::Agent;

type AppState = Arc<Agent>;

const COOKIE: &str = "halo_session";
/// A console session lasts a working day; then the token is asked for again.
const SESSION_SECONDS: u64 = 12 * 3600;
/// Largest login form: a token and a few form fields.
const LOGIN_BYTES: usize = 4096;
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn routes(agent: AppState, throttle: Arc<crate::transport::throttle::Throttle>) -> Router<AppState> {
    let protected = Router::new()
        .route("/console/", get(overview))
        .route("/console/nodes/{name}", get(node_page))
        .route("/console/nodes/{name}/{action}", post(node_action))
        .route("/console/roles/{name}", get(role_page))
        .route("/console/roles/{name}/{action}", post(role_action))
        .route("/console/events", get(events_page))
        .route("/console/stream", get(stream))
        .route("/console/logout", post(logout))
        .route_layer(middleware::from_fn_with_state(agent, require_session));
    let sessions = Arc::new(session::Sessions::default());
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route(
            "/console/login",
            get(login_page).merge(
                post(login)
                    .route_layer(middleware::from_fn_with_state(throttle, crate::transport::throttle::limit))
                    .layer(DefaultBodyLimit::max(LOGIN_BYTES)),
            ),
        )
        .route("/console/assets/console.js", get(script))
        .route("/console/assets/console.css", get(style))
        .merge(protected)
        .layer(Extension(sessions))
        .layer(middleware::map_response(secure_headers))
}

async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Not `no-referrer`: with it a browser sends `Origin: null` on form posts, which the
    // same-origin check must refuse.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// Every page but the login page needs a valid token in the session cookie (a viewer's
/// shows the pages; actions need an operator's). A form post must also come from the console
/// itself: a browser names the page that sent it in `Origin`.
async fn require_session(
    State(agent): State<AppState>,
    Extension(sessions): Extension<Arc<session::Sessions>>,
    headers: HeaderMap,
    mut request: Request,
    next: Next,
) -> Response {
    let token = session_token(&headers).and_then(|id| sessions.token_of(id));
    let caller = match token {
        Some(token) => crate::api::access::caller_soon(&agent, &token).await.ok(),
        None => None,
    };
    let Some(caller) = caller else {
        return if request.method() == axum::http::Method::GET && request.uri().path() != "/console/stream" {
            Redirect::to("/console/login").into_response()
        } else {
            (StatusCode::UNAUTHORIZED, "log in to the console first").into_response()
        };
    };
    // HTTP/2 carries the host in the URI (`:authority`), HTTP/1.1 in the Host header.
    let host = request.uri().authority().map(|a| a.as_str().to_string());
    if request.method() == axum::http::Method::POST && !same_origin(&headers, host.as_deref()) {
        return (StatusCode::FORBIDDEN, "this form was not sent from the console").into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

fn same_origin(headers: &HeaderMap, authority: Option<&str>) -> bool {
    let host = authority.or_else(|| headers.get(header::HOST).and_then(|v| v.to_str().ok()));
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        // Browsers always send Origin on a form post; a client that sends none is not a browser
        // a third-party page could drive.
        None => true,
        Some(origin) => host.is_some_and(|h| origin.strip_prefix("https://") == Some(h)),
    }
}

async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("console.js"))
}

async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("console.css"))
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
}

async fn login_page(State(agent): State<AppState>) -> Markup {
    pages::login(agent.member().is_some(), None)
}

async fn login(
    State(agent): State<AppState>,
    Extension(sessions): Extension<Arc<session::Sessions>>,
    Form(form): Form<LoginForm>,
) -> Response {
    let token = form.token.trim();
    if let Err(e) = crate::api::access::caller_soon(&agent, &halo_security::sha256_hex(token)).await {
        let why = if agent.member().is_none() { e.to_string() } else { "That is not a token of this cluster.".into() };
        return (StatusCode::UNAUTHORIZED, pages::login(agent.member().is_some(), Some(&why))).into_response();
    }
    let id = sessions.open(halo_security::sha256_hex(token), Duration::from_secs(SESSION_SECONDS));
    let cookie = format!("{COOKIE}={id}; Path=/console; HttpOnly; Secure; SameSite=Strict; Max-Age={SESSION_SECONDS}");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/console/")).into_response()
}

async fn logout(Extension(sessions): Extension<Arc<session::Sessions>>, headers: HeaderMap) -> Response {
    if let Some(id) = session_token(&headers) {
        sessions.close(id);
    }
    let cookie = format!("{COOKIE}=; Path=/console; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/console/login")).into_response()
}

/// `?done=CODE` after an action: which one, so the page can say it was asked for. A code, not a
/// message: a link must not be able to make the console say anything it likes.
#[derive(Debug, Default, Deserialize)]
struct Done {
    done: Option<String>,
}

async fn overview(
    State(agent): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(done): Query<Done>,
) -> Result<Markup, Page> {
    let status = crate::api::current_status(&agent).await?;
    let cluster = agent.local_cluster()?;
    Ok(pages::overview(&context(&agent, &caller, &status, done), &status, &cluster))
}

async fn node_page(
    State(agent): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(done): Query<Done>,
) -> Result<Markup, Page> {
    let status = crate::api::current_status(&agent).await?;
    let Some(node) = status.nodes.iter().find(|n| n.name == name) else {
        return Err(Page::not_found(format!("no node named '{name}'")));
    };
    let round_trips: Vec<Option<u64>> = (0..node.networks.len()).map(|i| agent.round_trip_us(node.id, i)).collect();
    Ok(pages::node(&context(&agent, &caller, &status, done), &status, node, &round_trips))
}

async fn role_page(
    State(agent): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(done): Query<Done>,
) -> Result<Markup, Page> {
    let status = crate::api::current_status(&agent).await?;
    let Json(role) = roles::show_role(State(agent.clone()), Path(name)).await?;
    let history: Vec<_> = recent_events(&agent, 1000)?
        .into_iter()
        .filter(|e| e.subject == role.role.name && e.kind == EventKind::Role)
        .take(30)
        .collect();
    Ok(pages::role(&context(&agent, &caller, &status, done), &status, &role, &history))
}

#[derive(Debug, Default, Deserialize)]
struct EventFilter {
    /// `node`, `network`, `role` or `validation`; empty for all.
    #[serde(default)]
    kind: String,
    /// Words the subject or message must contain.
    #[serde(default)]
    q: String,
}

async fn events_page(
    State(agent): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(filter): Query<EventFilter>,
) -> Result<Markup, Page> {
    let status = crate::api::current_status(&agent).await?;
    let q = filter.q.to_lowercase();
    let kind = match filter.kind.as_str() {
        "" => None,
        name => Some(
            EventKind::ALL
                .into_iter()
                .find(|k| k.as_str() == name)
                .ok_or_else(|| AgentError::bad_request(format!("unknown event kind '{name}'")))?,
        ),
    };
    let events: Vec<_> = recent_events(&agent, 1000)?
        .into_iter()
        .filter(|e| kind.is_none_or(|k| e.kind == k))
        .filter(|e| q.is_empty() || e.message.to_lowercase().contains(&q) || e.subject.to_lowercase().contains(&q))
        .take(200)
        .collect();
    Ok(pages::events(&context(&agent, &caller, &status, Done::default()), &events, &filter.kind, &filter.q))
}

/// The newest `limit` events, newest first.
fn recent_events(agent: &Agent, limit: usize) -> Result<Vec<halo_core::events::Event>, AgentError> {
    let member = agent.require_member()?;
    let mut events = member.reader.events(None, limit).map_err(|e| AgentError::internal(e.to_string()))?;
    events.reverse();
    Ok(events)
}

async fn stream(State(agent): State<AppState>) -> Result<Response, AgentError> {
    let reader = agent.require_member()?.reader.clone();
    let after = crate::api::events::newest(&reader)?;
    Ok(crate::api::events::live(reader, after).into_response())
}

#[derive(Debug, Default, Deserialize)]
struct ActionForm {
    /// `yes` once the admin confirmed on the confirmation page.
    #[serde(default)]
    confirm: String,
    /// Move: the target node (empty: the best one).
    #[serde(default)]
    to: String,
    /// Move: live, quick or cold (empty: live for a VM, cold otherwise).
    #[serde(default)]
    mode: String,
}

async fn node_action(
    State(agent): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, action)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Result<Response, Page> {
    crate::api::access::require(&caller, AccessRole::Operator, "this action")?;
    let (question, consequence) = match action.as_str() {
        "pause" => ("Pause", "No new roles will be placed on it; its roles keep running there."),
        "drain" => ("Drain", "Every role on it is moved to other nodes (VMs live), then it is paused."),
        "failback" => ("Resume with failback", "Roles that prefer it move back to it now."),
        "resume" => ("Resume", ""),
        _ => return Err(Page::not_found(format!("no node action '{action}'"))),
    };
    if action != "resume" && form.confirm != "yes" {
        let (title, back) = (format!("{question} node {name}?"), format!("/console/nodes/{}", segment(&name)));
        let page = pages::Confirm {
            title: &title,
            consequence,
            back: &back,
            action: &action,
            to: "",
            mode: "",
            button: question,
        };
        return Ok(pages::confirm(&page).into_response());
    }
    let node = Path(name.clone());
    let result = match action.as_str() {
        "pause" | "drain" => {
            roles::pause_node(
                State(agent.clone()),
                Extension(caller.clone()),
                node,
                Json(PauseBody { drain: action == "drain" }),
            )
            .await
        }
        _ => {
            roles::resume_node(
                State(agent.clone()),
                Extension(caller.clone()),
                node,
                Json(ResumeBody { failback: action == "failback" }),
            )
            .await
        }
    };
    result?;
    Ok(Redirect::to(&format!("/console/nodes/{}?done={action}", segment(&name))).into_response())
}

async fn role_action(
    State(agent): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, action)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Result<Response, Page> {
    crate::api::access::require(&caller, AccessRole::Operator, "this action")?;
    let state = agent.require_member()?.reader.state();
    let owner =
        state.roles.get(&name).and_then(|r| r.owner).and_then(|id| state.nodes.get(&id)).map(|n| n.name.clone());
    let (question, consequence) = match action.as_str() {
        "start" => ("Start", String::new()),
        "stop" => ("Stop", "Its service ends until someone starts it again.".to_string()),
        "move" => {
            let to = if form.to.is_empty() { "the best other node" } else { form.to.as_str() };
            let how = if form.mode.is_empty() { String::new() } else { format!(" ({} migration)", form.mode) };
            ("Move", format!("It moves from {} to {to}{how}.", owner.as_deref().unwrap_or("no node")))
        }
        _ => return Err(Page::not_found(format!("no role action '{action}'"))),
    };
    if action != "start" && form.confirm != "yes" {
        let (title, back) = (format!("{question} role {name}?"), format!("/console/roles/{}", segment(&name)));
        let page = pages::Confirm {
            title: &title,
            consequence: &consequence,
            back: &back,
            action: &action,
            to: &form.to,
            mode: &form.mode,
            button: question,
        };
        return Ok(pages::confirm(&page).into_response());
    }
    let role = Path(name.clone());
    let result = match action.as_str() {
        "start" => roles::start_role(State(agent.clone()), Extension(caller.clone()), role).await,
        "stop" => roles::stop_role(State(agent.clone()), Extension(caller.clone()), role).await,
        _ => {
            let mode = match form.mode.as_str() {
                "" => None,
                word => Some(halo_core::migration::MoveMode::parse(word).map_err(AgentError::bad_request)?),
            };
            let body = MoveRequestBody { to: Some(form.to.clone()).filter(|t| !t.is_empty()), mode };
            roles::move_role(State(agent.clone()), Extension(caller.clone()), role, Json(body)).await
        }
    };
    result?;
    Ok(Redirect::to(&format!("/console/roles/{}?done={action}", segment(&name))).into_response())
}

/// What every page's frame shows.
pub(crate) struct Context {
    pub cluster: String,
    /// The node serving the console.
    pub node: String,
    pub done: Option<String>,
    /// Whether the session's token may act (an operator's or an admin's); a viewer's sees the
    /// pages without their buttons.
    pub can_act: bool,
}

fn context(agent: &Agent, caller: &Caller, status: &StatusView, done: Done) -> Context {
    Context {
        cluster: status.cluster.clone(),
        node: agent.config.name.clone(),
        done: done.done,
        can_act: caller.role.permits(AccessRole::Operator),
    }
}

/// A page that says what went wrong, with the status code of the API's answer.
struct Page {
    status: StatusCode,
    body: Markup,
}

impl Page {
    fn error(e: AgentError) -> Self {
        Self { status: e.status(), body: pages::problem(&e.to_string()) }
    }

    fn not_found(message: String) -> Self {
        Self::error(AgentError::not_found(message))
    }
}

impl From<AgentError> for Page {
    fn from(e: AgentError) -> Self {
        Self::error(e)
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        (self.status, self.body).into_response()
    }
}

/// A name as one URL path segment (names are simple, but a link must never depend on it).
pub(crate) fn segment(name: &str) -> String {
    let mut out = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("theme=dark; halo_session=abc123; other=1"));
        assert_eq!(session_token(&headers), Some("abc123"));
        headers.insert(header::COOKIE, HeaderValue::from_static("halo_sessionx=nope"));
        assert_eq!(session_token(&headers), None);
    }

    #[test]
    fn a_form_post_from_another_site_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("10.0.0.1:7400"));
        assert!(same_origin(&headers, None));
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://10.0.0.1:7400"));
        assert!(same_origin(&headers, None));
        assert!(same_origin(
            &HeaderMap::from_iter([(header::ORIGIN, HeaderValue::from_static("https://h:1"))]),
            Some("h:1")
        ));
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&headers, None));
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&headers, None));
    }

    #[test]
    fn names_become_safe_path_segments() {
        assert_eq!(segment("web-1.a_b"), "web-1.a_b");
        assert_eq!(segment("<script>/../x"), "%3Cscript%3E%2F..%2Fx");
    }
}
