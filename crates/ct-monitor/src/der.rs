//! Just enough DER to take the CT extensions out of a `TBSCertificate`.

use crate::error::Error;

/// DER of the precertificate poison OID 1.3.6.1.4.1.11129.2.4.3.
const POISON_OID: &[u8] = &[
    0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x03,
];
/// DER of the embedded SCT list OID 1.3.6.1.4.1.11129.2.4.2.
const SCT_LIST_OID: &[u8] = &[
    0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x02,
];

fn bad(offset: usize, reason: &str) -> Error {
    Error::malformed("TBSCertificate DER", offset, reason)
}

/// One TLV: (tag, header length, total length) at the start of `b`.
fn tlv(b: &[u8], base: usize) -> Result<(u8, usize, usize), Error> {
    let (&tag, rest) = b.split_first().ok_or_else(|| bad(base, "truncated tag"))?;
    if tag & 0x1f == 0x1f {
        return Err(bad(base, "high tag numbers are not used in certificates"));
    }
    let (&first, rest) = rest
        .split_first()
        .ok_or_else(|| bad(base + 1, "truncated length"))?;
    let (len, hdr) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(bad(base + 1, "indefinite or oversized length"));
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, b| (a << 8) | usize::from(*b));
        (len, 2 + n)
    };
    let total = hdr
        .checked_add(len)
        .filter(|t| *t <= b.len())
        .ok_or_else(|| bad(base, "length beyond the input"))?;
    Ok((tag, hdr, total))
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn wrap(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    push_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// The `TBSCertificate` with the poison and SCT-list extensions removed, so a
/// precertificate and its final certificate give the same bytes (RFC 6962 §3.2).
/// Returns the input unchanged (borrowed) when there is nothing to remove.
pub(crate) fn strip_ct_extensions(tbs: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, Error> {
    let (tag, hdr, total) = tlv(tbs, 0)?;
    if tag != 0x30 || total != tbs.len() {
        return Err(bad(0, "not exactly one SEQUENCE"));
    }
    let body = &tbs[hdr..];
    let mut pos = 0;
    while pos < body.len() {
        let (tag, ehdr, etotal) = tlv(&body[pos..], hdr + pos)?;
        if tag != 0xa3 {
            pos += etotal;
            continue;
        }
        // [3] EXPLICIT Extensions ::= SEQUENCE OF Extension
        let inner = &body[pos + ehdr..pos + etotal];
        let (stag, shdr, stotal) = tlv(inner, hdr + pos + ehdr)?;
        if stag != 0x30 || stotal != inner.len() {
            return Err(bad(hdr + pos, "extensions are not one SEQUENCE"));
        }
        let mut kept = Vec::with_capacity(inner.len());
        let mut removed = false;
        let mut p = shdr;
        while p < inner.len() {
            let (xtag, xhdr, xtotal) = tlv(&inner[p..], hdr + pos + ehdr + p)?;
            let ext = &inner[p..p + xtotal];
            if xtag != 0x30 {
                return Err(bad(hdr + pos + ehdr + p, "extension is not a SEQUENCE"));
            }
            let oid_part = &ext[xhdr..];
            if oid_part.starts_with(POISON_OID) || oid_part.starts_with(SCT_LIST_OID) {
                removed = true;
            } else {
                kept.extend_from_slice(ext);
            }
            p += xtotal;
        }
        if !removed {
            return Ok(std::borrow::Cow::Borrowed(tbs));
        }
        let mut content = Vec::with_capacity(body.len());
        content.extend_from_slice(&body[..pos]);
        // An empty SEQUENCE OF is not allowed (SIZE (1..MAX)): drop the field.
        if !kept.is_empty() {
            content.extend(wrap(0xa3, &wrap(0x30, &kept)));
        }
        content.extend_from_slice(&body[pos + etotal..]);
        return Ok(std::borrow::Cow::Owned(wrap(0x30, &content)));
    }
    Ok(std::borrow::Cow::Borrowed(tbs))
}

/// DER of the authorityKeyIdentifier OID 2.5.29.35.
const AKI_OID: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x23];

/// The top-level elements of a SEQUENCE, as whole TLV slices.
fn children(seq: &[u8]) -> Result<Vec<&[u8]>, Error> {
    let (tag, hdr, total) = tlv(seq, 0)?;
    if tag != 0x30 || total != seq.len() {
        return Err(bad(0, "not exactly one SEQUENCE"));
    }
    let mut out = Vec::new();
    let mut pos = hdr;
    while pos < seq.len() {
        let (_, _, n) = tlv(&seq[pos..], pos)?;
        out.push(&seq[pos..pos + n]);
        pos += n;
    }
    Ok(out)
}

/// The extensions of a `[3]` element other than the authorityKeyIdentifier.
fn extensions_without_aki(a3: &[u8]) -> Result<Vec<&[u8]>, Error> {
    let (_, hdr, _) = tlv(a3, 0)?;
    let list = children(&a3[hdr..])?;
    let mut out = Vec::with_capacity(list.len());
    for ext in list {
        let (_, xhdr, _) = tlv(ext, 0)?;
        if !ext[xhdr..].starts_with(AKI_OID) {
            out.push(ext);
        }
    }
    Ok(out)
}

/// Why a precertificate does not match the TBS a log recorded for it.
pub(crate) fn precert_mismatch(
    logged_tbs: &[u8],
    precert_tbs: &[u8],
) -> Result<Option<&'static str>, Error> {
    let pre = strip_ct_extensions(precert_tbs)?;
    if pre.len() == precert_tbs.len() {
        return Ok(Some("the precertificate has no poison extension"));
    }
    if *pre == *logged_tbs {
        return Ok(None);
    }
    // A precertificate signed by a precertificate-signing CA names that CA as issuer
    // (and its key in the AKI); the log rewrites both to the final issuer's.
    let (a, b) = (children(&pre)?, children(logged_tbs)?);
    if a.len() != b.len() {
        return Ok(Some("different number of TBSCertificate fields"));
    }
    let issuer = if a.first().is_some_and(|f| f.first() == Some(&0xa0)) {
        3
    } else {
        2
    };
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        if i == issuer || x == y {
            continue;
        }
        if x.first() == Some(&0xa3) && y.first() == Some(&0xa3) {
            if extensions_without_aki(x)? != extensions_without_aki(y)? {
                return Ok(Some(
                    "extensions differ beyond the authority key identifier",
                ));
            }
            continue;
        }
        return Ok(Some(
            "a TBSCertificate field other than issuer and extensions differs",
        ));
    }
    Ok(None)
}

/// The contents of a DER OCTET STRING that spans all of `b` (an extension value
/// that wraps a TLS structure, such as the embedded SCT list).
pub(crate) fn octet_string(b: &[u8]) -> Result<&[u8], Error> {
    let (tag, hdr, total) = tlv(b, 0)?;
    if tag != 0x04 || total != b.len() {
        return Err(Error::malformed(
            "SCT list extension",
            0,
            "not exactly one OCTET STRING",
        ));
    }
    Ok(&b[hdr..])
}

/// The first element of the SEQUENCE `seq` as a whole TLV (a certificate's
/// `TBSCertificate`, byte for byte as encoded).
pub(crate) fn first_element(seq: &[u8]) -> Result<&[u8], Error> {
    let (tag, hdr, total) = tlv(seq, 0)?;
    if tag != 0x30 || total != seq.len() {
        return Err(bad(0, "not exactly one SEQUENCE"));
    }
    let (_, _, n) = tlv(&seq[hdr..], hdr)?;
    Ok(&seq[hdr..hdr + n])
}
