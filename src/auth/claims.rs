//! The claims of a registry token and the checks on them
//! (docker/distribution `registry/auth/token/token.go: Verify`).

use serde::Deserialize;
use time::OffsetDateTime;

use super::Error;
use super::scope::{Grant, Grants};

/// Allowed clock skew for `exp` and `nbf` (distribution's `Leeway`).
pub const LEEWAY_SECONDS: i64 = 60;

/// `aud`: notary 0.7 reads a string; distribution 3 also writes a list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    List(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    pub aud: Option<Audience>,
    /// Missing counts as 0, i.e. long expired, as in Go.
    #[serde(default)]
    pub exp: i64,
    #[serde(default)]
    pub nbf: i64,
    #[serde(default)]
    pub access: Option<Vec<Grant>>,
}

/// What the server expects of every token (`auth.options`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectations {
    pub issuer: String,
    pub service: String,
}

impl Claims {
    /// Issuer, audience and validity window, in distribution's order.
    pub fn check(&self, expected: &Expectations, now: OffsetDateTime) -> Result<(), Error> {
        if self.iss != expected.issuer {
            return Err(Error::UntrustedIssuer);
        }
        let audience_ok = match &self.aud {
            Some(Audience::One(aud)) => *aud == expected.service,
            // A list must name this service and nothing else: a token meant
            // for several services is not accepted in place of one for us.
            Some(Audience::List(list)) => list.len() == 1 && list[0] == expected.service,
            None => false,
        };
        if !audience_ok {
            return Err(Error::WrongAudience);
        }
        let now = now.unix_timestamp();
        if now > self.exp.saturating_add(LEEWAY_SECONDS) {
            return Err(Error::Expired { exp: self.exp });
        }
        if now < self.nbf.saturating_sub(LEEWAY_SECONDS) {
            return Err(Error::NotYetValid { nbf: self.nbf });
        }
        Ok(())
    }

    pub fn grants(&self) -> Grants {
        Grants(self.access.clone().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected() -> Expectations {
        Expectations {
            issuer: "issuer".into(),
            service: "notary".into(),
        }
    }

    fn claims(json: &str) -> Claims {
        serde_json::from_str(json).unwrap()
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(seconds).unwrap()
    }

    #[test]
    fn validity_window_has_60_seconds_of_leeway() {
        let c = claims(r#"{"iss":"issuer","aud":"notary","exp":1000,"nbf":500}"#);
        assert_eq!(c.check(&expected(), at(700)), Ok(()));
        assert_eq!(c.check(&expected(), at(1060)), Ok(()));
        assert_eq!(
            c.check(&expected(), at(1061)),
            Err(Error::Expired { exp: 1000 })
        );
        assert_eq!(c.check(&expected(), at(440)), Ok(()));
        assert_eq!(
            c.check(&expected(), at(439)),
            Err(Error::NotYetValid { nbf: 500 })
        );
        let no_exp = claims(r#"{"iss":"issuer","aud":"notary"}"#);
        assert_eq!(
            no_exp.check(&expected(), at(700)),
            Err(Error::Expired { exp: 0 })
        );
    }

    #[test]
    fn issuer_and_audience_must_match_exactly() {
        let wrong_iss = claims(r#"{"iss":"Issuer","aud":"notary","exp":1000}"#);
        assert_eq!(
            wrong_iss.check(&expected(), at(700)),
            Err(Error::UntrustedIssuer)
        );
        for (aud, ok) in [
            (r#""notary""#, true),
            (r#"["notary"]"#, true),
            (r#"["notary","registry"]"#, false),
            (r#"["registry"]"#, false),
            (r#"[]"#, false),
            (r#""registry""#, false),
        ] {
            let c = claims(&format!(r#"{{"iss":"issuer","aud":{aud},"exp":1000}}"#));
            let result = c.check(&expected(), at(700));
            assert_eq!(result.is_ok(), ok, "{aud}");
        }
        let missing = claims(r#"{"iss":"issuer","exp":1000}"#);
        assert_eq!(
            missing.check(&expected(), at(700)),
            Err(Error::WrongAudience)
        );
    }
}
