//! Assembly and lifecycle: the router with its layers, the background tasks (incident
//! response, dashboard ticks, threat-intelligence reloads, key rotation), and a
//! graceful shutdown that drains connections and saves state.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get, post};
use palisade_core_traits::Clock;
use palisade_device_fp::rustls;
use palisade_device_fp::rustls::pki_types::pem::PemObject;
use palisade_device_fp::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use palisade_device_fp::{Ja4Acceptor, Ja4ConnectInfo, Ja4Listener};
use palisade_playbooks::{Definition, Engine};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceBuilder;

use crate::admin::AdminState;
use crate::app::admin_routes;
use crate::config::Config;
use crate::http;
use crate::idempotency;
use crate::incident::{self, Correlator};
use crate::response::{Bus, Responder};
use crate::service::{Gateway, StartError, part};

/// How often expired playbook decisions are undone.
const EXPIRY_TICK: Duration = Duration::from_secs(1);

/// The HTTP surface of `gw`, one tower service (serve it with
/// `axum::ServiceExt::into_make_service_with_connect_info`).
///
/// Each stack of middleware wraps a whole router once (`ServiceBuilder` over the
/// router), not each route (`Router::layer`): a request then clones each layer over a
/// router (a reference count) instead of over every route's boxed service. The
/// outermost stack is returned as it is, not wrapped in one more `Router`, and `/api`
/// routes are the public router's own (no nested router): each router level is a
/// route lookup and a boxed service and future per request.
pub fn router(
    gw: Arc<Gateway>,
    shutdown: watch::Receiver<bool>,
) -> impl tower::Service<
    axum::extract::Request,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future: Send,
> + Clone
+ Send
+ Sync
+ 'static {
    let idem = || idempotency::DedupLayer(gw.idempotency.clone());
    // Bearer token (jwt-cache's layer; `401` before routing; it puts the token's
    // subject into the extensions), then the per-subject limit (ratelimit's layer),
    // outside in.
    let bearer = || {
        ServiceBuilder::new()
            .layer(gw.auth.clone())
            .layer(gw.subject_layer.clone())
    };
    let logout = Router::new()
        .route("/logout", post(http::logout))
        .with_state(gw.clone());
    let logins = Router::new()
        .route("/login", post(http::login))
        .route("/login/step-up", post(http::step_up))
        .with_state(gw.clone());
    let public = Router::new()
        .route("/.well-known/jwks.json", get(http::jwks))
        .route("/healthz", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .with_state(gw.clone())
        .route_service(
            "/login",
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn_with_state(
                    gw.clone(),
                    http::keyed_login_gate,
                ))
                .layer(idem())
                .service(logins.clone()),
        )
        .route_service(
            "/login/step-up",
            ServiceBuilder::new().layer(idem()).service(logins),
        )
        .route_service("/logout", bearer().service(logout))
        // Every `/api` path needs a valid token (`401` before routing).
        // Layered method routers, not route services: a request then clones only its
        // method's stack, where a route service clones the whole method router. One
        // layer, not two: each `layer`/`route_layer` call boxes the stack once more,
        // and a request clones and drops every box (about 1,000 instructions each). A
        // method the route lacks (`405`) stores no idempotency record.
        .route("/api/me", get(http::me).layer(bearer().layer(idem())))
        .route("/api", any(http::not_found).layer(bearer()))
        .route("/api/", any(http::not_found).layer(bearer()))
        .route("/api/{*rest}", any(http::not_found).layer(bearer()));
    let operators = admin_routes(AdminState {
        users: gw.users.clone(),
        account_limit: gw.account_limit.clone(),
        sessions: gw.sessions.operators.clone(),
        dashboard: gw.dashboard.clone(),
        shutdown,
        tls: gw.config.tls_cert.is_some(),
        public_origin: gw.config.public_origin.clone(),
        gateway: Some(gw.clone()),
    });
    let metrics = Router::new()
        .route("/metrics", get(crate::metrics::render))
        .with_state(gw.dashboard.clone());
    let app = public.merge(operators).merge(metrics);
    ServiceBuilder::new()
        // Bodies are small here: a bound before anything reads them.
        .layer(axum::extract::DefaultBodyLimit::max(http::MAX_BODY))
        .layer(http::FrontLayer(gw.clone()))
        .layer(gw.ip_layer.clone())
        .service(app)
}

/// The TLS acceptor for `--tls-cert` / `--tls-key` (PEM: the chain, then a PKCS#8,
/// PKCS#1 or SEC1 key), TLS 1.2 and 1.3 with ring, HTTP/1.1.
fn tls_acceptor(cert: &Path, key: &Path) -> Result<Ja4Acceptor, StartError> {
    let named = |what: &'static str, path: &Path| {
        let path = path.display().to_string();
        move |e: rustls::pki_types::pem::Error| StartError::Part {
            part: "tls",
            message: format!("{what} {path}: {e}"),
        }
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(named("certificate", cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(named("certificate", cert))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(named("private key", key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(part("tls"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(part("tls"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ja4Acceptor::builder(Arc::new(config))
        .build()
        .map_err(part("tls"))
}

/// Turns the TLS listener's connection facts into what the rest of the stack reads:
/// the peer address (`ConnectInfo<SocketAddr>`) and the handshake (`ClientTls`).
async fn tls_connection(
    axum::extract::ConnectInfo(conn): axum::extract::ConnectInfo<Ja4ConnectInfo>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(conn.remote_addr()));
    req.extensions_mut()
        .insert(crate::http::ClientTls(conn.tls_info()));
    next.run(req).await
}

/// A running gateway.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state (for tests and the demo).
    pub gateway: Arc<Gateway>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    drain_timeout: Duration,
    closing: Arc<tokio::sync::Notify>,
    tasks: Vec<JoinHandle<()>>,
    responder: JoinHandle<Responder<std::fs::File>>,
    state_dir: PathBuf,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// Stops accepting, drains connections (WebSockets close), stops the background
    /// tasks and saves the playbooks' state.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let mut server = self.server;
        // A client that never finishes its request must not keep the state unsaved
        // until the process is killed.
        if tokio::time::timeout(self.drain_timeout, &mut server)
            .await
            .is_err()
        {
            tracing::warn!(after = ?self.drain_timeout, "requests still open at shutdown: closed");
            server.abort();
        }
        for t in &self.tasks {
            t.abort();
        }
        // The bus closes (connections cut at the drain timeout may still hold a
        // sender); the responder then finishes what it holds and hands its engine back.
        drop(self.gateway);
        self.closing.notify_one();
        if let Ok(Ok(responder)) =
            tokio::time::timeout(Duration::from_secs(5), self.responder).await
        {
            let state = responder.engine.state().to_json();
            let path = self.state_dir.join("playbooks-state.json");
            if let Err(e) = std::fs::write(&path, state) {
                tracing::error!(error = %e, path = %path.display(), "saving the playbooks' state failed");
            }
        }
    }
}

/// Starts the gateway on `config.listen` (port 0 picks a free one).
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<Running, StartError> {
    std::fs::create_dir_all(&config.state_dir).map_err(part("state directory"))?;
    // Installed before the first request, so every count reaches /metrics.
    let _ = crate::metrics::handle();
    let state_dir = config.state_dir.clone();
    let listen = config.listen;
    let drain_timeout = config.drain_timeout;
    let (bus, rx) = Bus::new(&config.region);
    let rotate_every = config.key_rotation;
    let gw = Arc::new(Gateway::build(config, clock.clone(), bus).await?);
    // The keys verify (and, in a fleet, are published) before the first request.
    gw.refresh_keys().await?;
    let warm = gw.clone();
    tokio::task::spawn_blocking(move || warm.warm_up())
        .await
        .map_err(part("warm-up"))?;
    gw.publish_keys();

    // Incident response: the playbooks, resumed from the saved state.
    let def = Definition::default_set().map_err(part("playbooks"))?;
    let saved = std::fs::read_to_string(state_dir.join("playbooks-state.json")).ok();
    let engine = match saved.map(|s| palisade_playbooks::State::from_json(&s)) {
        Some(Ok(snapshot)) => Engine::restore(def, snapshot),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "the saved playbooks' state does not parse; starting empty");
            Engine::new(Definition::default_set().map_err(part("playbooks"))?)
        }
        None => Engine::new(def),
    };
    let audit_path = state_dir.join("audit.jsonl");
    let audit = crate::audit::open(&audit_path, clock.now()).map_err(part("audit log"))?;
    let responder = Responder {
        engine,
        executor: gw.executor()?,
        audit,
        reopen_audit: Some(Box::new(crate::audit::reopener(audit_path, clock.clone()))),
        correlator: match gw.incident_ids.clone() {
            None => Correlator::new(incident::WINDOW),
            Some(ids) => Correlator::fleet(incident::WINDOW, ids),
        },
        dashboard: gw.dashboard.clone(),
        clock: clock.clone(),
        claims: gw.action_claims.clone(),
    };
    let closing = Arc::new(tokio::sync::Notify::new());
    let responder = tokio::spawn(responder.run(rx, EXPIRY_TICK, closing.clone()));

    let mut tasks = Vec::new();
    let dash = gw.dashboard.clone();
    tasks.push(tokio::spawn(async move {
        let mut t = tokio::time::interval(Duration::from_secs(1));
        loop {
            t.tick().await;
            dash.tick();
        }
    }));
    let rotating = gw.clone();
    tasks.push(tokio::spawn(async move {
        let mut t = tokio::time::interval(rotate_every);
        t.tick().await; // the first key was made at start
        loop {
            t.tick().await;
            if let Err(e) = rotating.rotate_keys().await {
                tracing::error!(error = %e, "key rotation failed; the current key keeps signing");
            }
        }
    }));
    if let Some((status, task)) = crate::ct::start(
        &gw.config,
        clock.clone(),
        gw.bus.clone(),
        gw.dashboard.clone(),
    )
    .await?
    {
        let _ = gw.ct.set(status);
        tasks.push(task);
    }
    if gw.fleet.is_some() {
        let fleet = gw.clone();
        tasks.push(tokio::spawn(async move {
            let mut t = tokio::time::interval(crate::service::FLEET_REFRESH);
            loop {
                t.tick().await;
                if let Err(e) = fleet.refresh_keys().await {
                    tracing::warn!(error = %e, "the fleet's keys could not be refreshed; keeping the last known");
                }
            }
        }));
    }
    // In a fleet, the dashboard shows every instance's activities.
    if let (Some(access), Some(fleet)) = (&gw.redis, &gw.fleet) {
        let shared = crate::dashboard::fleet::start(
            &gw.dashboard,
            access.clone(),
            fleet.instance().to_owned(),
        );
        tasks.extend(shared);
    }
    if let Some(intel) = gw.intel.clone() {
        tasks.push(tokio::spawn(intel.watch(Duration::from_secs(5))));
    }

    let (stop, stopped) = watch::channel(false);
    let app = router(gw.clone(), stopped.clone());
    let tls = match (&gw.config.tls_cert, &gw.config.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(part("listen"))?;
    let addr = listener.local_addr().map_err(part("listen"))?;
    let mut signal = stopped;
    let drained = async move {
        let _ = signal.wait_for(|s| *s).await;
    };
    let server = match tls {
        // TLS served here: device-fp reads each ClientHello for its JA4 before rustls
        // completes the handshake; the handlers see the peer and the TLS facts.
        Some(acceptor) => {
            let listener = Ja4Listener::builder(listener, acceptor)
                .build()
                .map_err(part("tls"))?;
            let app = ServiceBuilder::new()
                .layer(axum::middleware::from_fn(tls_connection))
                .service(app);
            tokio::spawn(async move {
                let served = axum::serve(
                    listener,
                    axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<Ja4ConnectInfo>(app),
                )
                .with_graceful_shutdown(drained)
                .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "server stopped");
                }
            })
        }
        None => {
            tokio::spawn(async move {
                let served = axum::serve(
                listener,
                axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<SocketAddr>(app),
            )
            .with_graceful_shutdown(drained)
            .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "server stopped");
                }
            })
        }
    };
    tracing::info!(%addr, "palisade-gateway listening");
    Ok(Running {
        addr,
        gateway: gw,
        stop,
        server,
        drain_timeout,
        closing,
        tasks,
        responder,
        state_dir,
    })
}
