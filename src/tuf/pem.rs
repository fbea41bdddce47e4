//! Minimal PEM reading, with Go's `encoding/pem` semantics where Notary relies
//! on them: the first block wins, text around blocks is skipped, header lines
//! (`role: targets`) are allowed and ignored.

use base64::Engine;

/// One decoded PEM block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemBlock {
    pub label: String,
    pub headers: Vec<(String, String)>,
    pub der: Vec<u8>,
}

/// Every well-formed PEM block in `input`, in order.
pub fn blocks(input: &[u8]) -> Vec<PemBlock> {
    let text = String::from_utf8_lossy(input);
    let mut found = Vec::new();
    let mut rest: &str = &text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after_begin = &rest[start + "-----BEGIN ".len()..];
        let Some(label_end) = after_begin.find("-----") else {
            break;
        };
        let label = &after_begin[..label_end];
        let body_and_rest = &after_begin[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = body_and_rest.find(&end_marker) else {
            break;
        };
        if let Some(block) = decode_body(label, &body_and_rest[..end]) {
            found.push(block);
        }
        rest = &body_and_rest[end + end_marker.len()..];
    }
    found
}

/// The first PEM block in `input`, as Go's `pem.Decode` returns it.
pub fn first_block(input: &[u8]) -> Option<PemBlock> {
    blocks(input).into_iter().next()
}

fn decode_body(label: &str, body: &str) -> Option<PemBlock> {
    let mut headers = Vec::new();
    let mut encoded = String::with_capacity(body.len());
    for line in body.lines() {
        let line = line.trim();
        if let Some((key, value)) = line.split_once(':') {
            headers.push((key.trim().to_string(), value.trim().to_string()));
        } else {
            encoded.push_str(line);
        }
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(encoded.as_bytes())
        .ok()?;
    Some(PemBlock {
        label: label.to_string(),
        headers,
        der,
    })
}

/// Encodes DER bytes as PEM with 64-character lines.
pub fn encode(label: &str, headers: &[(&str, &str)], der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for (key, value) in headers {
        out.push_str(&format!("{key}: {value}\n"));
    }
    if !headers.is_empty() {
        out.push('\n');
    }
    for chunk in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_blocks_with_headers_and_noise() {
        let text = "junk\n-----BEGIN A-----\nrole: targets\n\nAAEC\n-----END A-----\n\
                    -----BEGIN B-----\nAw==\n-----END B-----\n";
        let found = blocks(text.as_bytes());
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].label, "A");
        assert_eq!(found[0].headers, vec![("role".into(), "targets".into())]);
        assert_eq!(found[0].der, vec![0, 1, 2]);
        assert_eq!(found[1].der, vec![3]);
    }

    #[test]
    fn encode_round_trips() {
        let der: Vec<u8> = (0..200u8).collect();
        let pem = encode("PUBLIC KEY", &[("role", "targets/releases")], &der);
        let block = first_block(pem.as_bytes()).unwrap();
        assert_eq!(block.der, der);
        assert_eq!(block.label, "PUBLIC KEY");
    }
}
