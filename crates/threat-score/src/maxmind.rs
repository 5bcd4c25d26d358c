//! [`GeoLookup`] from MaxMind databases (feature `maxmind`).

use std::net::IpAddr;
use std::path::Path;

use maxminddb::{Reader, geoip2};

use crate::{Error, GeoInfo, GeoLookup};

/// Country and location from a City (or Country) database, ASN from an ASN database.
/// Either may be absent; lookups that fail or find nothing leave fields empty.
pub struct MaxMindLookup {
    city: Option<Reader<Vec<u8>>>,
    asn: Option<Reader<Vec<u8>>>,
}

impl std::fmt::Debug for MaxMindLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaxMindLookup")
            .field(
                "city",
                &self
                    .city
                    .as_ref()
                    .map(|r| r.metadata().database_type.clone()),
            )
            .field(
                "asn",
                &self
                    .asn
                    .as_ref()
                    .map(|r| r.metadata().database_type.clone()),
            )
            .finish()
    }
}

fn reader(what: &'static str, bytes: Option<Vec<u8>>) -> Result<Option<Reader<Vec<u8>>>, Error> {
    bytes
        .map(|b| Reader::from_source(b).map_err(|source| Error::GeoDatabase { what, source }))
        .transpose()
}

impl MaxMindLookup {
    /// From database bytes (a City or Country database, an ASN database).
    pub fn from_bytes(city: Option<Vec<u8>>, asn: Option<Vec<u8>>) -> Result<Self, Error> {
        Ok(MaxMindLookup {
            city: reader("city", city)?,
            asn: reader("asn", asn)?,
        })
    }

    /// From database files.
    pub fn open(city: Option<&Path>, asn: Option<&Path>) -> Result<Self, Error> {
        let read = |what, p: Option<&Path>| p.map(|p| Self::read(what, p)).transpose();
        Self::from_bytes(read("city", city)?, read("asn", asn)?)
    }

    /// The bytes of the `what` database (`"city"`, `"asn"`) at `path`, for
    /// [`from_bytes`](Self::from_bytes): [`Error::GeoFile`] names the file it could
    /// not read.
    pub fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, Error> {
        std::fs::read(path).map_err(|source| Error::GeoFile {
            what,
            path: path.display().to_string(),
            source,
        })
    }
}

impl GeoLookup for MaxMindLookup {
    fn lookup(&self, ip: IpAddr) -> GeoInfo {
        let mut info = GeoInfo::default();
        let city = self.city.as_ref().and_then(|r| {
            r.lookup(ip)
                .and_then(|l| l.decode::<geoip2::City<'_>>())
                .ok()
                .flatten()
        });
        if let Some(c) = city {
            info.country = c.country.iso_code.map(str::to_owned);
            if let (Some(la), Some(lo)) = (c.location.latitude, c.location.longitude) {
                info.location = Some((la, lo));
            }
        }
        info.asn = self
            .asn
            .as_ref()
            .and_then(|r| {
                r.lookup(ip)
                    .and_then(|l| l.decode::<geoip2::Asn<'_>>())
                    .ok()
                    .flatten()
            })
            .and_then(|a| a.autonomous_system_number);
        info
    }
}
