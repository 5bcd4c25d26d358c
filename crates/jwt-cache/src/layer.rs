//! The tower layer: RFC 6750 bearer token in, validated token (and typed claims) in
//! the request extensions, or a refusal answered as HTTP.

use std::borrow::Cow;
use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::request::Parts;
use http::{Extensions, HeaderMap, HeaderValue, Method, Request, Response, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use palisade_core_traits::AuthenticatedSubject;
use serde::de::DeserializeOwned;
use tower_layer::Layer;
use tower_service::Service;

use crate::bearer::{access_token_param, b64token, bearer_credential, bearer_token};
use crate::reject::{AuthRejection, valid_realm, valid_scope};
use crate::{Error, ValidatedToken, Validator};

/// Default bound on a form body read for RFC 6750's form-body method.
pub const DEFAULT_MAX_FORM_BYTES: NonZeroUsize = NonZeroUsize::new(64 * 1024).expect("non-zero");

/// The typed claims of a validated token: what [`JwtAuthBuilder::claims`] puts in the
/// request extensions, and (feature `axum`) the extractor that takes them out.
///
/// With feature `axum`, `Claims<T>` extracts from the token the layer validated or,
/// without the layer, validates the request itself with the [`JwtAuth`] it finds in
/// the request extensions (`.layer(axum::Extension(auth))`). Claims that do not
/// deserialize into `T` are a `401 invalid_token` ([`Error::ClaimsType`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims<T>(pub T);

type InsertClaims = fn(&ValidatedToken, &mut Extensions) -> Result<(), Error>;

fn insert_claims<T: DeserializeOwned + Clone + Send + Sync + 'static>(
    token: &ValidatedToken,
    extensions: &mut Extensions,
) -> Result<(), Error> {
    extensions.insert(Claims(decode_claims::<T>(token)?));
    Ok(())
}

/// The token's claims as `T`; serde's message is dropped (it may quote a value).
pub(crate) fn decode_claims<T: DeserializeOwned>(token: &ValidatedToken) -> Result<T, Error> {
    T::deserialize(token.claims()).map_err(|_| Error::ClaimsType)
}

struct Config {
    validator: Arc<Validator>,
    realm: Option<Arc<str>>,
    query: bool,
    form: bool,
    max_form_bytes: usize,
    scopes: Vec<String>,
    claims: Option<InsertClaims>,
}

/// Bearer-token authentication for tower services and axum routers: a [`Layer`]
/// that takes the token (RFC 6750), validates it through the [`Validator`] (cache,
/// revocation and single flight as in [`Validator::validate_async`]), checks the
/// required scopes, and puts `Arc<ValidatedToken>`, the token's `sub` as a
/// core-traits `AuthenticatedSubject` (for the layers behind, such as ratelimit's
/// per-subject limits) and, with [`JwtAuthBuilder::claims`], [`Claims<T>`] into the
/// request extensions. A refusal
/// never reaches the inner service: it is answered as [`AuthRejection`] says.
///
/// Cheap to clone (one `Arc`). With axum: `Router::new().route(…).layer(auth)`; for
/// one route with more scopes: `.route_layer(auth.with_scopes(&["admin"])?)`.
#[derive(Clone)]
pub struct JwtAuth {
    config: Arc<Config>,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("realm", &self.config.realm)
            .field("query", &self.config.query)
            .field("form", &self.config.form)
            .field("scopes", &self.config.scopes)
            .finish_non_exhaustive()
    }
}

/// Builds a [`JwtAuth`]: every setter is infallible, [`build`](Self::build) checks
/// them all.
#[must_use]
pub struct JwtAuthBuilder {
    validator: Option<Arc<Validator>>,
    realm: Option<String>,
    query: bool,
    form: bool,
    max_form_bytes: NonZeroUsize,
    scopes: Vec<String>,
    claims: Option<InsertClaims>,
}

impl JwtAuthBuilder {
    /// The validator every token goes through (required).
    pub fn validator(mut self, validator: Arc<Validator>) -> Self {
        self.validator = Some(validator);
        self
    }

    /// The `realm` of the `WWW-Authenticate` challenge (visible ASCII and spaces).
    /// Default: none.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Also accept the token as an `access_token` query parameter (RFC 6750 §2.3).
    /// Off by default, and discouraged: URLs end up in logs, histories and `Referer`
    /// headers. Responses to such requests get `Cache-Control: private`.
    pub fn allow_query(mut self, allow: bool) -> Self {
        self.query = allow;
        self
    }

    /// Also accept the token as an `access_token` field of an
    /// `application/x-www-form-urlencoded` body (RFC 6750 §2.2; never with `GET` or
    /// `HEAD`). Off by default. Such a body is read (at most
    /// [`max_form_bytes`](Self::max_form_bytes)) and handed on unchanged. Works
    /// through the layer only: an extractor cannot read the body.
    pub fn allow_form_body(mut self, allow: bool) -> Self {
        self.form = allow;
        self
    }

    /// The longest form body read for the form-body method (default
    /// [`DEFAULT_MAX_FORM_BYTES`]); a longer one is `400 invalid_request`.
    pub fn max_form_bytes(mut self, max: NonZeroUsize) -> Self {
        self.max_form_bytes = max;
        self
    }

    /// Scopes every request must have (all of them) in the token's `scope` claim (a
    /// space-separated string, RFC 8693 §4.2 / RFC 9068 §2.2.3); a token without
    /// them is `403 insufficient_scope`. Replaces earlier calls. Default: none.
    pub fn require_scopes(mut self, scopes: &[&str]) -> Self {
        self.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Also deserialize the claims into `T` and put [`Claims<T>`] into the request
    /// extensions; claims that do not fit are `401 invalid_token`.
    pub fn claims<T: DeserializeOwned + Clone + Send + Sync + 'static>(mut self) -> Self {
        self.claims = Some(insert_claims::<T>);
        self
    }

    /// The layer. Fails with [`Error::InvalidConfig`] without a validator, with a
    /// realm that is not visible ASCII, or with a scope outside RFC 6749's
    /// `scope-token` syntax.
    pub fn build(self) -> Result<JwtAuth, Error> {
        let validator = self.validator.ok_or_else(|| {
            Error::config(
                "validator",
                "JwtAuth needs a validator (JwtAuthBuilder::validator)",
            )
        })?;
        if let Some(realm) = &self.realm
            && !valid_realm(realm)
        {
            return Err(Error::config(
                "realm",
                "only visible ASCII and spaces can be a realm",
            ));
        }
        check_scopes(&self.scopes)?;
        Ok(JwtAuth {
            config: Arc::new(Config {
                validator,
                realm: self.realm.map(Arc::from),
                query: self.query,
                form: self.form,
                max_form_bytes: self.max_form_bytes.get(),
                scopes: self.scopes,
                claims: self.claims,
            }),
        })
    }
}

fn check_scopes(scopes: &[String]) -> Result<(), Error> {
    match scopes.iter().position(|s| !valid_scope(s)) {
        Some(i) => Err(Error::config(
            "scopes",
            format!("scope #{} is not an RFC 6749 scope-token", i + 1),
        )),
        None => Ok(()),
    }
}

impl JwtAuth {
    /// A builder: a validator is required; header method only, no realm, no scopes.
    pub fn builder() -> JwtAuthBuilder {
        JwtAuthBuilder {
            validator: None,
            realm: None,
            query: false,
            form: false,
            max_form_bytes: DEFAULT_MAX_FORM_BYTES,
            scopes: Vec::new(),
            claims: None,
        }
    }

    /// The same authentication, with these scopes required instead (for one route:
    /// `.route_layer(auth.with_scopes(&["admin"])?)`). Fails like
    /// [`JwtAuthBuilder::build`] for a scope outside the `scope-token` syntax.
    pub fn with_scopes(&self, scopes: &[&str]) -> Result<JwtAuth, Error> {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        check_scopes(&scopes)?;
        let c = &self.config;
        Ok(JwtAuth {
            config: Arc::new(Config {
                validator: c.validator.clone(),
                realm: c.realm.clone(),
                query: c.query,
                form: c.form,
                max_form_bytes: c.max_form_bytes,
                scopes,
                claims: c.claims,
            }),
        })
    }

    /// The validator.
    pub fn validator(&self) -> &Arc<Validator> {
        &self.config.validator
    }

    /// `error` as this layer answers it (counted in the validator's stats if the
    /// validator did not count it already).
    pub(crate) fn reject(&self, error: Error, counted: bool) -> AuthRejection {
        if !counted {
            self.config.validator.counters.reject(&error);
        }
        AuthRejection::new(error, self.config.realm.clone())
    }

    /// The token of the header or (if enabled) query method; a form-body token, if
    /// any, is `form`. More than one method, or none, is refused.
    fn pick<'a>(
        &self,
        headers: &'a HeaderMap,
        uri: &Uri,
        form: Option<String>,
    ) -> Result<(Cow<'a, str>, bool), Error> {
        let header = bearer_token(headers)?;
        let query = match uri.query() {
            Some(q) if self.config.query => access_token_param(q.as_bytes())?,
            _ => None,
        };
        let used = usize::from(header.is_some())
            + usize::from(query.is_some())
            + usize::from(form.is_some());
        if used > 1 {
            return Err(Error::InvalidRequest(
                "more than one method carries a token (RFC 6750 §2)",
            ));
        }
        let from_query = query.is_some();
        match header
            .map(Cow::Borrowed)
            .or(query.map(Cow::Owned))
            .or(form.map(Cow::Owned))
        {
            Some(token) => Ok((token, from_query)),
            None => Err(Error::MissingToken),
        }
    }

    /// Validates `token`, checks the scopes, and fills the extensions.
    pub(crate) async fn admit(
        &self,
        token: &str,
        extensions: &mut Extensions,
    ) -> Result<Arc<ValidatedToken>, AuthRejection> {
        let validator = &self.config.validator;
        let answer = match validator.validate_without_waiting(token.as_bytes()) {
            Some(answer) => answer,
            None => Box::pin(validator.validate_async(token)).await,
        };
        self.admitted(answer, extensions)
    }

    /// The validator's `answer`, with the scopes checked and the extensions filled.
    fn admitted(
        &self,
        answer: Result<Arc<ValidatedToken>, Error>,
        extensions: &mut Extensions,
    ) -> Result<Arc<ValidatedToken>, AuthRejection> {
        let validated = answer.map_err(|e| self.reject(e, true))?;
        self.check_scopes(&validated)
            .map_err(|e| self.reject(e, false))?;
        if let Some(insert) = self.config.claims {
            insert(&validated, extensions).map_err(|e| self.reject(e, false))?;
        }
        if let Some(sub) = (validated.identity().subject.as_deref()).filter(|s| !s.is_empty()) {
            extensions.insert(AuthenticatedSubject(sub.to_owned()));
        }
        extensions.insert(validated.clone());
        extensions.insert(self.clone());
        Ok(validated)
    }

    /// Decides without waiting when it can: a token in the header (or query) that the
    /// cache answers, or a refusal. `Err(parts)`: a form body to read, or a cache
    /// miss (the caller waits for those).
    #[allow(clippy::result_large_err)] // the `Err` gives the request's parts back
    fn decide_now(&self, mut parts: Parts) -> Result<(Parts, Result<bool, AuthRejection>), Parts> {
        if self.config.form && is_form(&parts) {
            return Err(parts);
        }
        let validator = &self.config.validator;
        let picked = if self.config.query {
            self.pick(&parts.headers, &parts.uri, None)
                .map(|(token, from_query)| {
                    let bytes = match token {
                        Cow::Borrowed(t) => Cow::Borrowed(t.as_bytes()),
                        Cow::Owned(t) => Cow::Owned(t.into_bytes()),
                    };
                    (bytes, from_query)
                })
        } else {
            // Header only (the default): the token's syntax is checked below, after
            // the cache.
            bearer_credential(&parts.headers)
                .and_then(|token| token.ok_or(Error::MissingToken))
                .map(|token| (Cow::Borrowed(token), false))
        };
        let answer = match picked {
            Err(e) => Err(self.reject(e, false)),
            // The cache first: a token it holds validated once, so its syntax is right
            // and is not scanned again.
            Ok((token, from_query)) => match validator.cached(&token) {
                Some(answer) => Ok((answer, from_query)),
                None => match b64token(&token) {
                    Err(e) => Err(self.reject(e, false)),
                    Ok(_) => match validator.validate_without_waiting(&token) {
                        None => return Err(parts),
                        Some(answer) => Ok((answer, from_query)),
                    },
                },
            },
        };
        let decided = answer.and_then(|(answer, from_query)| {
            self.admitted(answer, &mut parts.extensions)
                .map(|_| from_query)
        });
        Ok((parts, decided))
    }

    fn check_scopes(&self, token: &ValidatedToken) -> Result<(), Error> {
        let required = &self.config.scopes;
        if required.is_empty() {
            return Ok(());
        }
        let granted = token
            .claims()
            .get("scope")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        if required.iter().all(|r| granted.split(' ').any(|g| g == r)) {
            Ok(())
        } else {
            Err(Error::InsufficientScope {
                required: required.join(" "),
            })
        }
    }

    /// The header/query token of a request whose body cannot be read (the axum
    /// extractor), validated and admitted.
    #[cfg(feature = "axum")]
    pub(crate) async fn admit_parts(
        &self,
        parts: &mut Parts,
    ) -> Result<Arc<ValidatedToken>, AuthRejection> {
        let (token, _) = self
            .pick(&parts.headers, &parts.uri, None)
            .map_err(|e| self.reject(e, false))?;
        self.admit(&token, &mut parts.extensions).await
    }

    async fn authenticate<B>(&self, parts: &mut Parts, body: B) -> Result<(B, bool), AuthRejection>
    where
        B: Body<Data = Bytes> + From<Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (body, form) = if self.config.form && is_form(parts) {
            let bytes = Limited::new(body, self.config.max_form_bytes)
                .collect()
                .await
                .map_err(|_| {
                    self.reject(
                        Error::InvalidRequest("form body unreadable or over the size limit"),
                        false,
                    )
                })?
                .to_bytes();
            let token = access_token_param(&bytes).map_err(|e| self.reject(e, false))?;
            (B::from(bytes), token)
        } else {
            (body, None)
        };
        let (token, from_query) = self
            .pick(&parts.headers, &parts.uri, form)
            .map_err(|e| self.reject(e, false))?;
        self.admit(&token, &mut parts.extensions).await?;
        Ok((body, from_query))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// RFC 6750 §2.2: a single-part `application/x-www-form-urlencoded` body, never
/// with `GET` (nor `HEAD`, which has no body either).
fn is_form(parts: &Parts) -> bool {
    parts.method != Method::GET
        && parts.method != Method::HEAD
        && parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
}

impl<S> Layer<S> for JwtAuth {
    type Service = JwtService<S>;

    fn layer(&self, inner: S) -> JwtService<S> {
        JwtService {
            inner,
            auth: self.clone(),
        }
    }
}

/// The service [`JwtAuth`] wraps around an inner service.
#[derive(Debug, Clone)]
pub struct JwtService<S> {
    inner: S,
    auth: JwtAuth,
}

impl<S, B, ResBody> Service<Request<B>> for JwtService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + From<Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResBody: From<&'static str> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (parts, body) = request.into_parts();
        // A cache hit or a refusal: decided here, and the service that polled ready is
        // called with no clone of it and no future of our own to allocate.
        let parts = match self.auth.decide_now(parts) {
            Ok((_, Err(rejection))) => return ResponseFuture::ready(rejection.into_http()),
            Ok((parts, Ok(from_query))) => {
                return ResponseFuture {
                    kind: Kind::Inner {
                        fut: self.inner.call(Request::from_parts(parts, body)),
                        from_query,
                    },
                };
            }
            Err(parts) => parts,
        };
        // The service polled ready is the one that is called (tower's clone rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        ResponseFuture {
            kind: Kind::Boxed {
                fut: Box::pin(async move {
                    let mut parts = parts;
                    let (body, from_query) = match auth.authenticate(&mut parts, body).await {
                        Ok(admitted) => admitted,
                        Err(rejection) => return Ok(rejection.into_http()),
                    };
                    let mut response = inner.call(Request::from_parts(parts, body)).await?;
                    private_if(from_query, &mut response);
                    Ok(response)
                }),
            },
        }
    }
}

/// RFC 6750 §2.3: a URI that carries a token must not be cached shared.
fn private_if<ResBody>(from_query: bool, response: &mut Response<ResBody>) {
    if from_query {
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("private"));
    }
}

type BoxedResponse<ResBody, E> = Pin<Box<dyn Future<Output = Result<Response<ResBody>, E>> + Send>>;

pin_project_lite::pin_project! {
    /// The future of [`JwtService`]: the inner service's (a cache hit, decided at
    /// once), a refusal, or a boxed one (a cache miss or a form body, which wait).
    pub struct ResponseFuture<F, ResBody, E> {
        #[pin]
        kind: Kind<F, ResBody, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = Projected]
    enum Kind<F, ResBody, E> {
        // Admitted without waiting: the inner service's future.
        Inner { #[pin] fut: F, from_query: bool },
        // Refused.
        Ready { response: Option<Response<ResBody>> },
        // Decided after a wait.
        Boxed { fut: BoxedResponse<ResBody, E> },
    }
}

impl<F, ResBody, E> ResponseFuture<F, ResBody, E> {
    fn ready(response: Response<ResBody>) -> Self {
        ResponseFuture {
            kind: Kind::Ready {
                response: Some(response),
            },
        }
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F, ResBody, E>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            Projected::Inner { fut, from_query } => {
                let from_query = *from_query;
                fut.poll(cx).map_ok(|mut r| {
                    private_if(from_query, &mut r);
                    r
                })
            }
            Projected::Ready { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => Poll::Pending, // polled after completion
            },
            Projected::Boxed { fut } => fut.as_mut().poll(cx),
        }
    }
}
