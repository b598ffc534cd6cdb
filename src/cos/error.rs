//! Typed COS errors: an HTTP status with COS's error code, message and request id, a transport
//! failure, or a response we could not understand. None of them ever carries a credential: the
//! only strings that go in are COS's own error fields, URLs (which never hold a signature,
//! since this client signs in the `Authorization` header) and transport error texts.

use std::fmt;

/// An error answered by COS (or the emulator): `<Error><Code>…` (cos-protocol.md §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    pub status: u16,
    /// COS's error code, e.g. `NoSuchKey`; for bodiless (HEAD) errors derived from the status.
    pub code: String,
    pub message: String,
    pub request_id: String,
    /// True when the error came inside a `200 OK` (Copy, Complete: §3.6, §3.13).
    pub in_ok_response: bool,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {} {}", self.status, self.code)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if self.in_ok_response {
            write!(f, " (inside a 200 response)")?;
        }
        if !self.request_id.is_empty() {
            write!(f, " [request id {}]", self.request_id)?;
        }
        Ok(())
    }
}

/// What kind of transport failure happened; decides whether a retry is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// No connection was made: nothing reached the server, always safe to retry.
    Connect,
    /// No answer within the timeout.
    Timeout,
    /// The connection broke while a body was being sent or received.
    Body,
    /// The request's body could not be read here (its file is shorter than the range to
    /// send): another attempt would fail the same way.
    LocalBody,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosError {
    #[error("COS error {0}")]
    Service(ServiceError),
    #[error("transport error ({kind:?}): {message}")]
    Transport {
        kind: TransportKind,
        message: String,
    },
    #[error("unexpected response from COS: {0}")]
    Protocol(String),
    #[error("invalid request: {0}")]
    InvalidInput(String),
    #[error("gave up after {attempts} attempts; last error: {last}")]
    RetriesExhausted { attempts: u32, last: Box<CosError> },
}

impl CosError {
    /// The error that decided the outcome (looking through `RetriesExhausted`).
    pub fn root(&self) -> &CosError {
        match self {
            CosError::RetriesExhausted { last, .. } => last.root(),
            other => other,
        }
    }

    pub fn service(&self) -> Option<&ServiceError> {
        match self.root() {
            CosError::Service(s) => Some(s),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        self.service().map(|s| s.status)
    }

    pub fn code(&self) -> Option<&str> {
        self.service().map(|s| s.code.as_str())
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    pub fn is_precondition_failed(&self) -> bool {
        self.status() == Some(412)
    }

    /// An SSE-C object read with a missing or different key (cos-protocol.md §6).
    pub fn is_sse_key_error(&self) -> bool {
        matches!(
            self.code(),
            Some("SsecDecryptHeaderInvalid") | Some("SSEHeaderNotAllowed")
        ) || (self.status() == Some(400) && self.code() == Some("BadRequest"))
    }

    pub fn is_transport(&self) -> bool {
        matches!(self.root(), CosError::Transport { .. })
    }

    pub(crate) fn protocol(msg: impl Into<String>) -> Self {
        CosError::Protocol(msg.into())
    }

    pub(crate) fn from_reqwest(e: reqwest::Error) -> Self {
        let local_body = {
            let mut source = std::error::Error::source(&e);
            let mut found = false;
            while let Some(s) = source {
                if s.downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .is_some_and(|inner| inner.is::<crate::file_stream::FileShorterThanRange>())
                {
                    found = true;
                    break;
                }
                source = s.source();
            }
            found
        };
        let kind = if local_body {
            TransportKind::LocalBody
        } else if e.is_connect() {
            TransportKind::Connect
        } else if e.is_timeout() {
            TransportKind::Timeout
        } else if e.is_body() || e.is_decode() || e.is_request() {
            TransportKind::Body
        } else {
            TransportKind::Other
        };
        // The chain holds the useful part ("connection reset", "operation timed out").
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        CosError::Transport { kind, message }
    }
}

/// The code COS would send for a bodiless error (HEAD), from the status alone.
pub(crate) fn code_for_status(status: u16) -> &'static str {
    match status {
        304 => "NotModified",
        400 => "BadRequest",
        403 => "AccessDenied",
        404 => "NoSuchResource",
        409 => "Conflict",
        412 => "PreconditionFailed",
        416 => "InvalidRange",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        _ => "UnknownError",
    }
}
