//! The words users read: every refusal's typed facts become the message the
//! notary and docker clients print. Only `server/error.rs` calls these; it
//! adds Notary's codes and detail names and applies the 1 KiB cut.

use crate::policy::names::NameError;
use crate::policy::{DelegationKeyProblem, IndexKind, LookupFailure, Violation};
use crate::repo::{Cap, Error as RepoError, ParamProblem, Refusal, UploadProblem};
use crate::signer::Error as SignerError;
use crate::tuf::Error as TufError;
use crate::tuf::certs::{CertificateProblem, RejectedRootKey, short_id};

/// The message of a client mistake the repository layer reports (server
/// faults have none: they are logged, not shown).
pub(super) fn repo_message(error: &RepoError) -> Option<String> {
    let message = match error {
        RepoError::InvalidGun { reason, .. } => format!("invalid repository name: {reason}"),
        RepoError::NoFilename => "the upload has a part without a file name (the role)".into(),
        RepoError::InvalidRole { role } => format!("{role:?} is not a valid role name"),
        RepoError::MalformedJson { role, error } => {
            format!("the {role} file is not valid metadata JSON: {error}")
        }
        RepoError::MalformedUpload { problem } => upload_problem(problem),
        RepoError::TooLarge { size, limit } => {
            let size = size.map(|s| format!("{s} bytes, ")).unwrap_or_default();
            format!("the upload is {size}more than the limit of {limit} bytes")
        }
        RepoError::Rejected { reason, .. } => refusal(reason),
        RepoError::KeyIdMismatch {
            role,
            listed,
            computed,
        } => format!(
            "{role} lists a key under key ID {listed}, but that key's ID is {computed}: every key \
             must be listed under its own key ID"
        ),
        RepoError::DuplicateJsonKey { role, key, path } => format!(
            "the {role} file repeats the JSON key {key:?} in one object (at {path}); metadata with \
             duplicate keys is ambiguous and is refused"
        ),
        RepoError::SnapshotStale { role, current } => format!(
            "the snapshot lists {role} with the checksums of a file that is not its current \
             version ({role} version {current}); a snapshot must name the current files"
        ),
        RepoError::SnapshotUnknownRole { role } => format!(
            "the snapshot lists {role}, which this repository does not have; a snapshot may list \
             only root, targets and published delegations"
        ),
        RepoError::SnapshotDropsRole { role, parent } => format!(
            "the snapshot leaves out {role}, which {parent} still delegates and the server holds; \
             remove the delegation from {parent} first, or list {role} in the snapshot"
        ),
        RepoError::StaleVersion {
            role,
            version,
            current,
        } => format!(
            "{role} version {version} is not newer than version {current} on the server; \
             someone else published meanwhile: update your copy and publish again"
        ),
        RepoError::Conflict { role, version } => format!(
            "the repository changed while this update was being stored ({role} version {version} \
             already exists); retry the publish"
        ),
        RepoError::LimitExceeded {
            cap,
            role,
            count,
            limit,
        } => limit_message(*cap, role.as_deref(), *count, *limit),
        RepoError::Busy { what, .. } => match what {
            crate::repo::Busy::RepositoryLock => {
                "the repository is busy with another update; nothing was stored: retry shortly"
                    .into()
            }
            crate::repo::Busy::Validation => {
                "the server is busy verifying other updates; nothing was stored: retry shortly"
                    .into()
            }
        },
        RepoError::RetiredKey {
            role,
            key_id,
            retired_at,
        } => {
            let date = retired_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            format!(
                "root lists {role} key {key_id} which was retired when this repository was \
                 deleted on {date}: this is the deleted repository's trust data. \
                 Initialise the repository anew (notary delete <gun>, then notary init \
                 <gun>) so that it gets new server keys"
            )
        }
        RepoError::InvalidParameters { problem } => parameters(problem),
        RepoError::Policy(violation) => violation_message(violation),
        RepoError::Signer(signer) => return signer_failure(signer),
        RepoError::NotFound { .. }
        | RepoError::Store(_)
        | RepoError::Generate(_)
        | RepoError::ValidationAborted => return None,
    };
    Some(message)
}

/// What a user is told when the remote signing service fails or gives an
/// answer that does not check out; `None` for the signer layer's other
/// errors (the local signer's store faults are logged, not shown). Only
/// public facts: key IDs, key types, the gRPC code; the signer's own words
/// may carry its internals and go to the server's log instead.
pub(super) fn signer_failure(error: &SignerError) -> Option<String> {
    const AFTER: &str = "nothing was stored. The server's operator finds the details in the \
                         server's log";
    let what = match error {
        SignerError::SignerFailed { code, .. } => format!(
            "the signing service reported an error ({})",
            code.description().to_lowercase()
        ),
        SignerError::SignerRefusedAlgorithm { algorithm, .. } => format!(
            "the signing service refuses to create {algorithm} keys; the server's \
             trust_service.key_algorithm must name an algorithm the signer supports"
        ),
        SignerError::SignerKeyMismatch { key_id, actual } => format!(
            "the signing service described key {} with a public key whose ID is {}, not that \
             key",
            short_id(key_id),
            short_id(actual)
        ),
        SignerError::SignerWrongMethod {
            key_id,
            method,
            keytype,
        } => format!(
            "the signing service signed with method {method:?}, which does not fit key {} \
             (a {keytype} key)",
            short_id(key_id)
        ),
        SignerError::SignerBadSignature { key_id } => format!(
            "the signing service returned a signature that does not verify with key {}",
            short_id(key_id)
        ),
        SignerError::SignerLostKey { key_id } => format!(
            "the signing service no longer holds key {} (was it deleted from the signer?)",
            short_id(key_id)
        ),
        _ => return None,
    };
    Some(format!("{what}; {AFTER}"))
}

/// An update outside the configured GUN prefixes, in notary-server's words
/// (Go's `%v` of a string slice).
pub(super) fn gun_prefix(prefixes: &[String]) -> String {
    format!("Require GUNs with prefix: [{}]", prefixes.join(" "))
}

/// A TUF failure, with the rejected signatures' reasons where the threshold
/// was not met.
pub(super) fn tuf(error: &TufError) -> String {
    match error {
        TufError::ThresholdNotMet { rejected, .. } if !rejected.is_empty() => {
            let reasons: Vec<String> = rejected
                .iter()
                .map(|r| format!("key {}: {}", short_id(&r.keyid), r.reason))
                .collect();
            format!("{error} ({})", reasons.join("; "))
        }
        _ => error.to_string(),
    }
}

/// Why an update breaks a TUF rule, in Notary's words where Notary has some
/// (the clients' users search for them), then what to do.
pub(super) fn refusal(reason: &Refusal) -> String {
    match reason {
        Refusal::Tuf(error) => tuf(error),
        Refusal::StoredUnreadable { role, error } => {
            format!("the stored {role} metadata is unreadable: {error}")
        }
        Refusal::StoredSnapshotNotObject => "the stored snapshot is not an object".into(),
        Refusal::NoRoot => "no pre-existing root and no root provided in update: the first \
                            publish of a repository must include its root.json"
            .into(),
        Refusal::RootVersionNotIncremented { current, new } => {
            format!("Root modifications must increment the version. Current {current}, new {new}")
        }
        Refusal::NoTrustedRootCertificate { rejected, misnamed } => format!(
            "could not validate the path to a trusted root: unable to retrieve valid leaf \
             certificates ({})",
            root_key_rejections(rejected, misnamed)
        ),
        Refusal::RootRotationUnsigned {
            version,
            previous,
            threshold,
            error,
        } => format!(
            "could not rotate trust to a new trusted root: failed to validate data with current \
             trusted certificates: root version {version} must be signed by {threshold} key(s) \
             of root version {previous} ({})",
            tuf(error)
        ),
        Refusal::RootNotSelfSigned { error } => format!(
            "could not validate the path to a trusted root: failed to validate integrity of roots \
             ({})",
            tuf(error)
        ),
        Refusal::ParentUnpublished { role, parent } => format!(
            "cannot verify {role}: its parent role {parent} has no metadata on the server; \
             publish {parent} with the delegation first"
        ),
        Refusal::NotDelegated { role, parent } => format!(
            "tuf: invalid role {role}. delegation does not exist: {parent} does not delegate to \
             {role}"
        ),
        Refusal::TargetOutsidePaths {
            target,
            role,
            paths,
        } => {
            let allowed = if paths.is_empty() {
                "it is delegated no paths".to_string()
            } else {
                format!("allowed prefixes: {paths:?}")
            };
            format!("target {target:?} is outside the paths delegated to {role} ({allowed})")
        }
        Refusal::TargetsMissing => {
            "no targets metadata: the first publish of a repository must include targets.json"
                .into()
        }
        Refusal::TargetsNotSignedByNewKeys {
            root_version,
            error,
        } => format!(
            "root version {root_version} changes the targets keys, but targets.json is not \
             signed by them ({}); publish targets signed with the new key in the same update",
            tuf(error)
        ),
        Refusal::SnapshotKeyNotHeld => {
            "no snapshot was included in update and server does not hold current snapshot key \
             for repository: sign the snapshot yourself, or hand its key to the server with \
             `notary key rotate <gun> snapshot -r`"
                .into()
        }
        Refusal::TimestampKeyNotHeld {
            root_version,
            listed,
        } => format!(
            "no timestamp keys exist on the server: root version {root_version} lists timestamp \
             key(s) {listed:?}, which this server does not hold; fetch the server's key \
             (`notary key rotate <gun> timestamp -r`) and publish again"
        ),
    }
}

/// Every root key left out, as one line: certificate checks, then names.
fn root_key_rejections(rejected: &[RejectedRootKey], misnamed: &[(String, NameError)]) -> String {
    rejected
        .iter()
        .map(|r| format!("key {}: {}", short_id(&r.keyid), certificate(&r.reason)))
        .chain(misnamed.iter().map(|(keyid, error)| {
            format!("key {}: certificate common name: {error}", short_id(keyid))
        }))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a root key is not a usable root certificate
/// (`tuf/utils/x509.go: ValidateCertificate`).
pub(super) fn certificate(problem: &CertificateProblem) -> String {
    match problem {
        CertificateProblem::NotCertificate { keytype } => {
            format!("root keys must be x509 certificates, this one is a plain {keytype} key")
        }
        CertificateProblem::Unreadable(error) => error.to_string(),
        CertificateProblem::LeafCount => {
            "the certificate bundle must hold exactly one leaf, first".into()
        }
        CertificateProblem::CommonNameMismatch { cn, gun } => {
            format!("certificate common name {cn:?} does not match the repository name {gun:?}")
        }
        CertificateProblem::ValidityWindow { cn } => {
            format!("certificate {cn:?} has an invalid validity window")
        }
        CertificateProblem::Sha1Signature { cn } => {
            format!("certificate {cn:?} uses the invalid SHA1 signature algorithm")
        }
        CertificateProblem::WeakRsa { cn, bits, minimum } => format!(
            "certificate {cn:?} has a {bits}-bit RSA key; at least {minimum} bits are required"
        ),
        CertificateProblem::NotYetValid { cn, not_before } => {
            format!("certificate {cn:?} is not valid before {not_before}")
        }
        CertificateProblem::Expired { cn, not_after } => {
            format!("certificate {cn:?} expired at {not_after}")
        }
    }
}

/// A delegation key the configured authorities do not vouch for: what to
/// call it (its certificate subject, or the key), and why.
fn delegation_key(key_id: &str, problem: &DelegationKeyProblem) -> (String, String) {
    let key = short_id(key_id);
    match problem {
        DelegationKeyProblem::PlainKey { keytype } => (
            format!("plain {keytype} key {key}"),
            "only certificates from the configured authority may sign delegations".into(),
        ),
        DelegationKeyProblem::Unreadable(error) => (format!("key {key}"), error.to_string()),
        DelegationKeyProblem::OutsideValidity {
            subject,
            not_before,
            not_after,
        } => (
            subject.clone(),
            format!("it is valid from {not_before} to {not_after}"),
        ),
        DelegationKeyProblem::UnknownIssuer { subject, issuer } => (
            subject.clone(),
            format!("its issuer {issuer} is not a configured authority"),
        ),
        DelegationKeyProblem::IssuerSignature { subject, authority } => (
            subject.clone(),
            format!("its signature does not verify with the key of {authority}"),
        ),
    }
}

/// A wrong query parameter, in notary-server's words for the changefeed.
pub(super) fn parameters(problem: &ParamProblem) -> String {
    match problem {
        ParamProblem::AuditLimit { limit, max } => {
            format!("invalid limit {limit}: expected 1 to {max}")
        }
        ParamProblem::NotInteger { name } => format!("{name} must be an integer"),
        ParamProblem::RecordsMissing => {
            "invalid records parameter: the records parameter is required".into()
        }
        ParamProblem::Records(error) => format!("invalid records parameter: {error}"),
        ParamProblem::ChangeId { shown } => format!(
            "did not recognize parameters: change ID expected to be integer, provided ID was: \
             {shown}"
        ),
    }
}

/// Why an upload could not be read, without the parser's internals.
pub(super) fn upload_problem(problem: &UploadProblem) -> String {
    let what = match problem {
        UploadProblem::NotMultipart { content_type } => {
            format!("expected a multipart/form-data body, got {content_type:?}")
        }
        UploadProblem::NoBoundary => {
            "the multipart Content-Type has no usable boundary parameter".to_string()
        }
        UploadProblem::Unreadable => "the request body could not be read in full".to_string(),
        UploadProblem::BadMultipart => {
            "the body is not well-formed multipart/form-data".to_string()
        }
        UploadProblem::BadPart { filename } => format!("the part {filename:?} could not be read"),
        UploadProblem::Timeout { seconds } => {
            format!("the upload was not received within {seconds} seconds")
        }
    };
    format!("the upload is malformed: {what}")
}

/// A server rule's refusal for users: the reason first, then what to do.
pub(super) fn violation_message(violation: &Violation) -> String {
    match violation {
        Violation::Name(error) => error.to_string(),
        Violation::ImmutableTagChanged { gun, tag } => {
            format!("tag {tag} in {gun} is immutable: it is already signed with a different digest")
        }
        Violation::ImmutableTagRemoved { gun, tag } => {
            format!("tag {tag} in {gun} is immutable: a signed tag cannot be removed")
        }
        Violation::ImmutableRepository { gun } => {
            format!("repository {gun} is immutable: its trust data cannot be deleted")
        }
        Violation::Index {
            gun,
            tag,
            digest,
            kind,
        } => refusal_message(gun, tag, digest, *kind),
        Violation::ManifestUnreachable {
            tag,
            digest,
            registry,
            failure,
        } => format!(
            "cannot check manifest type of tag {tag} ({digest}) with the registry {registry}: \
             {}; nothing was stored: publish again once the registry answers, or ask the \
             server's operator",
            lookup_failure(*failure)
        ),
        Violation::UnknownDigest {
            tag,
            digest,
            registry,
        } => format!(
            "tag {tag} ({digest}) is not in the registry {registry}; this repository only signs \
             pushed image manifests: push the image first"
        ),
        Violation::UntrustedDelegation {
            role,
            key_id,
            problem,
        } => {
            let (subject, reason) = delegation_key(key_id, problem);
            format!(
                "the certificate of delegation {role} (subject {subject:?}) is not issued by a \
                 trusted certificate authority: {reason}"
            )
        }
    }
}

/// The refusal, in the documents' words, reason first and short: the
/// client shows only the first KiB. It also says how to drop the refused
/// tag from docker's changelist, which docker would otherwise re-send on
/// every signed push.
pub(super) fn refusal_message(gun: &str, tag: &str, digest: &str, kind: IndexKind) -> String {
    let short: String = digest.chars().take(19).collect();
    let reset = format!(
        "Nothing was stored. To drop it from docker's pending changes run: notary -d ~/.docker/trust reset {gun} --all"
    );
    match kind {
        IndexKind::Application => format!(
            "tag {tag} is an application (an OCI index, {short}…): you cannot sign an application \
             since the Notary signer cannot sign OCI (Open Container Initiative) indices. Sign its \
             invocation image {tag}-invoc instead. {reset}"
        ),
        IndexKind::OciIndex | IndexKind::ManifestList => {
            let what = if kind == IndexKind::OciIndex {
                "an OCI image index"
            } else {
                "a Docker manifest list"
            };
            format!(
                "tag {tag} is a multi-platform image ({what}, {short}…): Docker Content Trust \
                 does not support multi-arch images (OCI indexes or manifest lists); sign each \
                 platform's image under its own tag. (Docker's containerd image store may push an \
                 index even for one platform: push with the classic store, or sign the platform \
                 manifest.) {reset}"
            )
        }
    }
}

/// A cap of `limits` was exceeded: which, by how much, and the setting an
/// operator raises it with.
pub(super) fn limit_message(cap: Cap, role: Option<&str>, count: usize, limit: usize) -> String {
    let what = match cap {
        Cap::KeysPerRole => "keys for one role",
        Cap::SignaturesPerFile => "signatures",
        Cap::DelegationsPerFile => "delegated roles",
        Cap::TargetsPerFile => "targets",
        Cap::PartsPerUpload => "files in one upload",
        Cap::RegistryLookupsPerPublish => "new or changed image digests to check with the registry",
    };
    let place = role.map(|r| format!(" in {r}")).unwrap_or_default();
    let advice = match cap {
        Cap::RegistryLookupsPerPublish | Cap::PartsPerUpload => "publish in smaller batches",
        Cap::TargetsPerFile => "spread targets over delegations",
        _ => "reduce them",
    };
    format!(
        "too many {what}{place}: {count}, the server accepts at most {limit} (setting {}); \
         nothing was stored: {advice}, or ask the server's operator to raise the limit",
        cap.setting()
    )
}

/// Why a registry lookup failed, for users: what happened, never the
/// registry's internal address, the server's credentials or an OS error
/// (those are in the server's log).
pub(super) fn lookup_failure(failure: LookupFailure) -> &'static str {
    match failure {
        LookupFailure::NotConfigured => "no registry is configured for this repository",
        LookupFailure::Timeout => "the registry did not answer in time",
        LookupFailure::Unreachable => "the registry cannot be reached",
        LookupFailure::CredentialsMissing => {
            "the registry requires credentials the server does not have"
        }
        LookupFailure::CredentialsRefused => "the registry refused the server's credentials",
        LookupFailure::AccessDenied => "the registry refused the server access to the repository",
        LookupFailure::RateLimited => "the registry is rate limiting the server",
        LookupFailure::RegistryError => "the registry reported an internal error",
        LookupFailure::TokenService => "the registry's token service failed",
        LookupFailure::BadAnswer => "the registry's answer was unusable",
    }
}
