//! The gateway's HTTP surface, assembled.

use axum::Router;
use axum::routing::{get, post};

use crate::admin::{self, AdminState};

/// The operators' routes: the dashboard page, its assets, sign-in and the stream.
pub fn admin_routes(state: AdminState) -> Router {
    Router::new()
        .route("/", get(admin::index))
        .route("/static/{*path}", get(admin::asset))
        .route("/dashboard/login", post(admin::login))
        .route("/dashboard/logout", post(admin::logout))
        .route("/ws", get(admin::ws))
        // Browsers ask for it; answering "nothing" keeps their consoles clean.
        .route(
            "/favicon.ico",
            get(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .with_state(state)
}
