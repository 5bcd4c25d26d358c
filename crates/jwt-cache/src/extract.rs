//! The axum side: `Claims<T>` as an extractor, refusals as responses.

use std::sync::Arc;

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::layer::decode_claims;
use crate::reject::AuthRejection;
use crate::{Claims, Error, JwtAuth, ValidatedToken};

impl<T, S> FromRequestParts<S> for Claims<T>
where
    T: DeserializeOwned + Send + Sync + 'static,
    S: Send + Sync,
{
    type Rejection = AuthRejection;

    /// In order: the `Claims<T>` the layer put in the extensions (taken out, not
    /// cloned); the token the layer validated, deserialized into `T`; else the
    /// request is validated here with the [`JwtAuth`] in the extensions (header
    /// and, if enabled, query method). No `JwtAuth` at all is a configuration error
    /// (500), never the client's.
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AuthRejection> {
        if let Some(claims) = parts.extensions.remove::<Claims<T>>() {
            return Ok(claims);
        }
        let auth = parts.extensions.get::<JwtAuth>().cloned();
        let token = match (parts.extensions.get::<Arc<ValidatedToken>>(), &auth) {
            (Some(token), _) => token.clone(),
            (None, Some(auth)) => auth.admit_parts(parts).await?,
            (None, None) => {
                let error = Error::config(
                    "JwtAuth",
                    "Claims<T> found neither a validated token nor a JwtAuth in the request \
                     extensions: add the JwtAuth layer, or Extension(JwtAuth)",
                );
                tracing::error!(%error, "jwt extractor cannot work as configured");
                return Err(AuthRejection::new(error, None));
            }
        };
        decode_claims::<T>(&token)
            .map(Claims)
            .map_err(|e| match &auth {
                Some(auth) => auth.reject(e, false),
                None => AuthRejection::new(e, None),
            })
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        self.into_http()
    }
}
