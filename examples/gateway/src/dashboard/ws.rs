//! One WebSocket client of the dashboard: snapshot, then the stream; resynced when it
//! lags, dropped when it stops reading.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use tokio::sync::broadcast::error::RecvError;

use super::Dashboard;

/// A client that does not take a message within this long is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one upgraded socket until the client leaves, stops reading, or the server
/// shuts down (`shutdown` resolves).
pub async fn serve_socket(
    mut socket: WebSocket,
    dashboard: Arc<Dashboard>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (snapshot, mut rx) = dashboard.subscribe();
    if send(&mut socket, snapshot).await.is_err() {
        return;
    }
    tokio::pin!(shutdown);
    loop {
        let next = tokio::select! {
            m = rx.recv() => m,
            incoming = socket.recv() => match incoming {
                // The browser only ever closes; anything else is ignored.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            },
            () = &mut shutdown => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
        };
        let text = match next {
            Ok(text) => text,
            // Fell behind the stream: what it missed is gone, a snapshot replaces it.
            // A new receiver with it: the old one would go on with messages older than
            // the snapshot (the oldest the stream still holds).
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "dashboard client lagged; resyncing");
                let (snapshot, fresh) = dashboard.subscribe();
                rx = fresh;
                snapshot
            }
            Err(RecvError::Closed) => return,
        };
        if send(&mut socket, text).await.is_err() {
            return;
        }
    }
}

async fn send(socket: &mut WebSocket, text: Utf8Bytes) -> Result<(), ()> {
    let frame = Message::Text(text);
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(frame)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}
