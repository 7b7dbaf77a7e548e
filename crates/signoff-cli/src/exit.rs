//! Exit statuses, one meaning each (README, "Exit codes"), for every
//! command that talks to a gateway:
//!
//! - the command's own: it ran (`exec`: CMD's status; others: 0);
//! - 77: the action was refused by policy, a reviewer, a rule of the
//!   gateway (separation of duties, role, the request's state) or a claim;
//! - 75: a condition that may pass: expired, lapsed, the wait ran out, the
//!   gateway or its database unreachable or failing;
//! - 2: something the caller must fix: flags, missing or invalid
//!   credentials, malformed input such as `--context`, an unknown id;
//! - 130: `exec` was interrupted while waiting (the request is cancelled);
//! - 1: any other failure (offline commands: a config file, a database, a
//!   verification that found a problem).

use signoff_client::ClientError;
pub use signoff_gates::{EXIT_DENIED, EXIT_TEMPFAIL, EXIT_USAGE};

/// Any failure that is none of the above.
pub const EXIT_FAILURE: i32 = 1;

/// An input to the CLI itself that the caller must fix (exit 2).
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// `message` as a [`Usage`] error.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Usage(message.into()).into()
}

/// The exit status of a command that failed with `error` from the client.
pub fn for_client_error(error: &ClientError) -> i32 {
    match error {
        ClientError::Config(_) => EXIT_USAGE,
        ClientError::Unreachable { .. } | ClientError::Decode(_) => EXIT_TEMPFAIL,
        ClientError::Api { problem } => match problem.status {
            // wrong, unknown or revoked credentials
            401 => EXIT_USAGE,
            // the gateway refused: a role, separation of duties, the
            // request's state, a claim (each refusal is recorded)
            403 | 409 => EXIT_DENIED,
            408 | 429 | 500..=599 => EXIT_TEMPFAIL,
            // 400, 404, 413, 422, …: the input is wrong
            _ => EXIT_USAGE,
        },
    }
}

/// The exit status of a command that failed with `error`: the first client
/// or usage error in its chain decides, anything else is [`EXIT_FAILURE`].
pub fn for_error(error: &anyhow::Error) -> i32 {
    for cause in error.chain() {
        if let Some(e) = cause.downcast_ref::<ClientError>() {
            return for_client_error(e);
        }
        if cause.downcast_ref::<Usage>().is_some() {
            return EXIT_USAGE;
        }
    }
    EXIT_FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;
    use signoff_core::wire::Problem;

    fn api(status: u16) -> ClientError {
        ClientError::Api {
            problem: Box::new(Problem {
                problem_type: "about:blank".into(),
                title: "t".into(),
                status,
                detail: "d".into(),
                instance: None,
                request_id: None,
            }),
        }
    }

    #[test]
    fn every_answer_has_one_meaning() {
        let cases = [
            (ClientError::Config("no token".into()), EXIT_USAGE),
            (
                ClientError::Unreachable {
                    url: "http://x".into(),
                    reason: "refused".into(),
                },
                EXIT_TEMPFAIL,
            ),
            (api(400), EXIT_USAGE),
            (api(401), EXIT_USAGE),
            (api(403), EXIT_DENIED),
            (api(404), EXIT_USAGE),
            (api(409), EXIT_DENIED),
            (api(422), EXIT_USAGE),
            (api(500), EXIT_TEMPFAIL),
            (api(503), EXIT_TEMPFAIL),
        ];
        for (error, code) in cases {
            assert_eq!(for_client_error(&error), code, "{error}");
            let wrapped = anyhow::Error::from(error).context("while showing a request");
            assert_eq!(for_error(&wrapped), code);
        }
        assert_eq!(for_error(&usage("bad --context")), EXIT_USAGE);
        assert_eq!(for_error(&anyhow::anyhow!("disk full")), EXIT_FAILURE);
    }
}
