//! The upload body of `POST /v2/<gun>/_trust/tuf/`: a `multipart/form-data`
//! (or `multipart/mixed`) body split into `(filename, bytes)` parts. Pure
//! and synchronous (the body is already in memory), so it can be fuzzed.
//! The role is the raw `filename` parameter, not a basename: delegation
//! names contain slashes (PROTOCOL.md §11.1).

use bytes::Bytes;
use futures_util::FutureExt;

use crate::repo::{Error as RepoError, UploadProblem};

/// Splits `body` into parts. multer is asynchronous, but over one chunk
/// that is already here nothing ever waits, so its futures complete on
/// their first poll; if one ever did not, the body is refused rather than
/// the request blocked.
pub fn parse(content_type: &str, body: Bytes) -> Result<Vec<(String, Vec<u8>)>, RepoError> {
    let malformed = |problem: UploadProblem| RepoError::MalformedUpload { problem };
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "multipart/form-data" && mime != "multipart/mixed" {
        return Err(malformed(UploadProblem::NotMultipart {
            content_type: content_type.chars().take(60).collect(),
        }));
    }
    let boundary =
        multer::parse_boundary(content_type.replacen("multipart/mixed", "multipart/form-data", 1))
            .map_err(|_| malformed(UploadProblem::NoBoundary))?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut parts = Vec::new();
    loop {
        let field = match multipart.next_field().now_or_never() {
            Some(Ok(Some(field))) => field,
            Some(Ok(None)) => break,
            Some(Err(e)) => {
                // multer's text describes its parser state: log it only.
                tracing::info!(error = %e, "malformed multipart upload");
                return Err(malformed(UploadProblem::BadMultipart));
            }
            None => return Err(malformed(UploadProblem::BadMultipart)),
        };
        let filename = field.file_name().unwrap_or("").to_string();
        let bad_part = || {
            malformed(UploadProblem::BadPart {
                filename: filename.chars().take(80).collect(),
            })
        };
        let data = match field.bytes().now_or_never() {
            Some(Ok(data)) => data,
            Some(Err(e)) => {
                tracing::info!(error = %e, "unreadable multipart part");
                return Err(bad_part());
            }
            None => return Err(bad_part()),
        };
        parts.push((filename, data.to_vec()));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_keep_slashes_in_file_names() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"targets/releases\"\r\n\
                    Content-Type: application/octet-stream\r\n\r\n{}\r\n--XyZ\r\n\
                    Content-Disposition: form-data; name=\"files\"; filename=\"root\"\r\n\r\n[1]\r\n--XyZ--\r\n";
        let parts = parse("multipart/form-data; boundary=XyZ", Bytes::from(body)).unwrap();
        assert_eq!(
            parts,
            vec![
                ("targets/releases".to_string(), b"{}".to_vec()),
                ("root".to_string(), b"[1]".to_vec())
            ]
        );
        assert!(parse("application/json", Bytes::new()).is_err());
        assert!(parse("multipart/form-data", Bytes::new()).is_err());
        assert!(
            parse(
                "multipart/form-data; boundary=XyZ",
                Bytes::from("--XyZ\r\ngarbage")
            )
            .is_err()
        );
        // No closing boundary: refused, not waited for.
        assert!(
            parse(
                "multipart/form-data; boundary=XyZ",
                Bytes::from("--XyZ\r\nContent-Disposition: form-data; filename=\"a\"\r\n\r\nx")
            )
            .is_err()
        );
    }
}
