//! Problem items in Criteo's error model and the error responses built from them.
//!
//! Criteo reports failures as `{"errors": [...], "warnings": [...]}` where each item has a
//! `traceId`, a `type` (category), a kebab-case `code`, the `instance` path, a `title` and an
//! optional `detail` and `source`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

/// Category of a problem, the `type` field of Criteo's problem items.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ProblemType {
    AccessControl,
    Authorization,
    Availability,
    Deprecation,
    Quota,
    Validation,
    Unknown,
}

/// One item of an `errors` or `warnings` array, without the per-request `traceId` and
/// `instance`, which [`Problem::to_json`] adds.
#[derive(Clone, Debug)]
pub(crate) struct Problem {
    pub(crate) problem_type: ProblemType,
    pub(crate) code: &'static str,
    pub(crate) title: String,
    pub(crate) detail: Option<String>,
    /// JSON pointer to the request field at fault, sent as `source.pointer`.
    pub(crate) pointer: Option<String>,
}

impl Problem {
    pub(crate) fn new(
        problem_type: ProblemType,
        code: &'static str,
        title: impl Into<String>,
    ) -> Self {
        Problem {
            problem_type,
            code,
            title: title.into(),
            detail: None,
            pointer: None,
        }
    }

    pub(crate) fn validation(code: &'static str, title: impl Into<String>) -> Self {
        Problem::new(ProblemType::Validation, code, title)
    }

    pub(crate) fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub(crate) fn with_pointer(mut self, pointer: impl Into<String>) -> Self {
        self.pointer = Some(pointer.into());
        self
    }

    pub(crate) fn to_json(&self, trace_id: &str, instance: &str) -> Value {
        let mut item = json!({
            "traceId": trace_id,
            "type": self.problem_type,
            "code": self.code,
            "instance": instance,
            "title": self.title,
        });
        if let Some(detail) = &self.detail {
            item["detail"] = json!(detail);
        }
        if let Some(pointer) = &self.pointer {
            item["source"] = json!({ "pointer": pointer });
        }
        item
    }
}

/// A failed request: the HTTP status and the problems reported in `errors`.
#[derive(Clone, Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) problems: Vec<Problem>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, problem: Problem) -> Self {
        ApiError {
            status,
            problems: vec![problem],
        }
    }

    pub(crate) fn bad_request(problem: Problem) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, problem)
    }

    /// Builds the response, with one trace id shared by all problems of the request.
    pub(crate) fn render(&self, instance: &str) -> Response {
        let trace_id = new_trace_id();
        let errors: Vec<Value> = self
            .problems
            .iter()
            .map(|problem| problem.to_json(&trace_id, instance))
            .collect();
        let body = json!({ "errors": errors, "warnings": [] });
        (self.status, Json(body)).into_response()
    }
}

/// Returns a fresh correlation id: 32 lowercase hex digits, like the ids Criteo's gateway
/// sends.
pub(crate) fn new_trace_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Builds the `warnings` array of a partially approved request.
pub(crate) fn warnings_json(warnings: &[Problem], instance: &str) -> Vec<Value> {
    let trace_id = new_trace_id();
    warnings
        .iter()
        .map(|warning| warning.to_json(&trace_id, instance))
        .collect()
}
