//! The routes of the fake Criteo API: which endpoint a method and path address.
//!
//! Every API path starts with the version (`/2026-07/...`); the token path has none. The
//! version is checked later, so that a decommissioned version gets 410 rather than 404.

use axum::http::Method;

use super::fault::RouteKind;

/// An API endpoint with the ids taken from its path, still unparsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    MarketingCreate,
    MarketingUpdate,
    MarketingSearch,
    MarketingDelete,
    /// Current route `.../audience-segments/{id}/contact-list` or legacy `.../audiences/{id}/contactlist`.
    MarketingAmend {
        segment_id: String,
    },
    MarketingWipe {
        segment_id: String,
    },
    MarketingStatistics {
        segment_id: String,
    },
    RetailCreate {
        account_id: String,
    },
    RetailUpdate {
        account_id: String,
    },
    RetailSearch {
        account_id: String,
    },
    RetailDelete {
        account_id: String,
    },
    RetailStatistics {
        account_id: String,
        segment_id: String,
    },
    RetailAddRemove {
        segment_id: String,
    },
    RetailClear {
        segment_id: String,
    },
}

impl Endpoint {
    pub(crate) fn kind(&self) -> RouteKind {
        match self {
            Endpoint::MarketingCreate | Endpoint::RetailCreate { .. } => RouteKind::Create,
            Endpoint::MarketingUpdate | Endpoint::RetailUpdate { .. } => RouteKind::Update,
            Endpoint::MarketingSearch | Endpoint::RetailSearch { .. } => RouteKind::Search,
            Endpoint::MarketingDelete | Endpoint::RetailDelete { .. } => RouteKind::Delete,
            Endpoint::MarketingAmend { .. } | Endpoint::RetailAddRemove { .. } => RouteKind::Amend,
            Endpoint::MarketingWipe { .. } | Endpoint::RetailClear { .. } => RouteKind::Wipe,
            Endpoint::MarketingStatistics { .. } | Endpoint::RetailStatistics { .. } => {
                RouteKind::Statistics
            }
        }
    }

    /// Checks whether the endpoint takes a JSON body, which requires
    /// `Content-Type: application/json`.
    pub(crate) fn takes_json_body(&self) -> bool {
        !matches!(
            self,
            Endpoint::MarketingWipe { .. }
                | Endpoint::MarketingStatistics { .. }
                | Endpoint::RetailStatistics { .. }
                | Endpoint::RetailClear { .. }
        )
    }
}

/// A resolved request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// `POST /oauth2/token`, outside API versioning.
    Token,
    /// An API endpoint under the version named by the first path segment.
    Api { version: String, endpoint: Endpoint },
}

impl Route {
    pub(crate) fn kind(&self) -> RouteKind {
        match self {
            Route::Token => RouteKind::Token,
            Route::Api { endpoint, .. } => endpoint.kind(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RouteError {
    NotFound,
    MethodNotAllowed,
}

/// Resolves a method and path to an endpoint.
pub(crate) fn resolve(method: &Method, path: &str) -> Result<Route, RouteError> {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    if segments == ["oauth2", "token"] {
        return match *method {
            Method::POST => Ok(Route::Token),
            _ => Err(RouteError::MethodNotAllowed),
        };
    }

    let [version, rest @ ..] = segments.as_slice() else {
        return Err(RouteError::NotFound);
    };
    let owned = |id: &str| id.to_owned();
    let candidates = match rest {
        ["marketing-solutions", "audience-segments"] => {
            vec![(Method::PATCH, Endpoint::MarketingUpdate)]
        }
        ["marketing-solutions", "audience-segments", "create"] => {
            vec![(Method::POST, Endpoint::MarketingCreate)]
        }
        ["marketing-solutions", "audience-segments", "search"] => {
            vec![(Method::POST, Endpoint::MarketingSearch)]
        }
        ["marketing-solutions", "audience-segments", "delete"] => {
            vec![(Method::POST, Endpoint::MarketingDelete)]
        }
        [
            "marketing-solutions",
            "audience-segments",
            id,
            "contact-list",
        ]
        | ["audiences", id, "contactlist"] => vec![
            (
                Method::PATCH,
                Endpoint::MarketingAmend {
                    segment_id: owned(id),
                },
            ),
            (
                Method::DELETE,
                Endpoint::MarketingWipe {
                    segment_id: owned(id),
                },
            ),
        ],
        [
            "marketing-solutions",
            "audience-segments",
            id,
            "contact-list",
            "statistics",
        ] => {
            vec![(
                Method::GET,
                Endpoint::MarketingStatistics {
                    segment_id: owned(id),
                },
            )]
        }
        ["retail-media", "accounts", account, "audience-segments"] => {
            vec![(
                Method::PATCH,
                Endpoint::RetailUpdate {
                    account_id: owned(account),
                },
            )]
        }
        [
            "retail-media",
            "accounts",
            account,
            "audience-segments",
            "create",
        ] => {
            vec![(
                Method::POST,
                Endpoint::RetailCreate {
                    account_id: owned(account),
                },
            )]
        }
        [
            "retail-media",
            "accounts",
            account,
            "audience-segments",
            "search",
        ] => {
            vec![(
                Method::POST,
                Endpoint::RetailSearch {
                    account_id: owned(account),
                },
            )]
        }
        [
            "retail-media",
            "accounts",
            account,
            "audience-segments",
            "delete",
        ] => {
            vec![(
                Method::POST,
                Endpoint::RetailDelete {
                    account_id: owned(account),
                },
            )]
        }
        [
            "retail-media",
            "accounts",
            account,
            "audience-segments",
            id,
            "contact-list",
        ] => vec![(
            Method::GET,
            Endpoint::RetailStatistics {
                account_id: owned(account),
                segment_id: owned(id),
            },
        )],
        [
            "retail-media",
            "audience-segments",
            id,
            "contact-list",
            "add-remove",
        ] => {
            vec![(
                Method::POST,
                Endpoint::RetailAddRemove {
                    segment_id: owned(id),
                },
            )]
        }
        [
            "retail-media",
            "audience-segments",
            id,
            "contact-list",
            "clear",
        ] => {
            vec![(
                Method::POST,
                Endpoint::RetailClear {
                    segment_id: owned(id),
                },
            )]
        }
        _ => return Err(RouteError::NotFound),
    };

    let endpoint = candidates
        .into_iter()
        .find(|(allowed, _)| allowed == method)
        .map(|(_, endpoint)| endpoint)
        .ok_or(RouteError::MethodNotAllowed)?;
    Ok(Route::Api {
        version: (*version).to_owned(),
        endpoint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_current_and_legacy_amend_routes() {
        let current = resolve(
            &Method::PATCH,
            "/2026-07/marketing-solutions/audience-segments/42/contact-list",
        );
        let legacy = resolve(&Method::PATCH, "/2026-07/audiences/42/contactlist");

        let expected = Route::Api {
            version: "2026-07".to_owned(),
            endpoint: Endpoint::MarketingAmend {
                segment_id: "42".to_owned(),
            },
        };
        assert_eq!(current, Ok(expected.clone()));
        assert_eq!(legacy, Ok(expected));
    }

    #[test]
    fn resolves_retail_media_routes() {
        let add_remove = resolve(
            &Method::POST,
            "/2026-07/retail-media/audience-segments/9/contact-list/add-remove",
        )
        .unwrap();
        let statistics = resolve(
            &Method::GET,
            "/2026-07/retail-media/accounts/777/audience-segments/9/contact-list",
        )
        .unwrap();

        assert_eq!(add_remove.kind(), RouteKind::Amend);
        assert_eq!(statistics.kind(), RouteKind::Statistics);
    }

    #[test]
    fn token_route_has_no_version() {
        assert_eq!(resolve(&Method::POST, "/oauth2/token"), Ok(Route::Token));
    }

    #[test]
    fn wrong_method_differs_from_unknown_path() {
        assert_eq!(
            resolve(&Method::GET, "/oauth2/token"),
            Err(RouteError::MethodNotAllowed)
        );
        assert_eq!(
            resolve(&Method::POST, "/2026-07/marketing-solutions/segments"),
            Err(RouteError::NotFound)
        );
    }
}
