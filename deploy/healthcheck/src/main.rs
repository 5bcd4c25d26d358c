//! `palisade-healthcheck`: exit 0 if the local gateway answers `/healthz` with 2xx.

use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let listen = std::env::var("PALISADE_LISTEN")
        .unwrap_or_else(|_| palisade_healthcheck::DEFAULT_LISTEN.to_owned());
    match palisade_healthcheck::probe_addr(&listen)
        .and_then(|addr| palisade_healthcheck::check(addr, Duration::from_secs(2)))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
